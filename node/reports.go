package node

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// reportStore keeps, on the leader, the latest monitoring report of every
// sidecar (with the local time it arrived) and a bounded history of them
// (repmgr's monitoring_history). Samples never go through the Raft log.
type reportStore struct {
	mu       sync.Mutex
	latest   map[uint32]storedReport
	history  []*pb.NodeReport // ring buffer
	next     int
	full     bool
	capacity int
}

type storedReport struct {
	report   *pb.NodeReport
	received time.Time // local monotonic time
}

func newReportStore(capacity int) *reportStore {
	return &reportStore{latest: map[uint32]storedReport{}, history: make([]*pb.NodeReport, capacity), capacity: capacity}
}

func (s *reportStore) put(r *pb.NodeReport, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest[r.NodeId] = storedReport{report: r, received: now}
	s.history[s.next] = r
	s.next = (s.next + 1) % s.capacity
	if s.next == 0 {
		s.full = true
	}
}

// get returns the latest report of a node and when it arrived.
func (s *reportStore) get(id uint32) (*pb.NodeReport, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.latest[id]
	return r.report, r.received, ok
}

// all returns the latest report of every node.
func (s *reportStore) all() []*pb.NodeReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pb.NodeReport, 0, len(s.latest))
	for _, r := range s.latest {
		out = append(out, r.report)
	}
	return out
}

// samples returns the history, oldest first, filtered.
func (s *reportStore) samples(nodeID uint32, sinceUnixMs int64, limit int) []*pb.NodeReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pb.NodeReport
	n := s.next
	if s.full {
		n = s.capacity
	}
	start := 0
	if s.full {
		start = s.next
	}
	for i := 0; i < n; i++ {
		r := s.history[(start+i)%s.capacity]
		if r == nil || (nodeID != 0 && r.NodeId != nodeID) || r.AtUnixMs < sinceUnixMs {
			continue
		}
		out = append(out, proto.Clone(r).(*pb.NodeReport))
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// trim drops history samples older than the cut-off; it returns how many.
func (s *reportStore) trim(beforeUnixMs int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := 0
	for i, r := range s.history {
		if r != nil && r.AtUnixMs < beforeUnixMs {
			s.history[i] = nil
			removed++
		}
	}
	return removed
}
