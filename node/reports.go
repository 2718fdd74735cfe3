package node

import (
	"sync"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// reportStore keeps, on the leader, the latest monitoring report of every
// sidecar (with the local time it arrived). Reports never go through the
// Raft log; the monitoring history is each sidecar's own, on disk
// (history.go).
type reportStore struct {
	mu     sync.Mutex
	latest map[uint32]storedReport
}

type storedReport struct {
	report   *pb.NodeReport
	received time.Time // local monotonic time
}

func newReportStore() *reportStore {
	return &reportStore{latest: map[uint32]storedReport{}}
}

func (s *reportStore) put(r *pb.NodeReport, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest[r.NodeId] = storedReport{report: r, received: now}
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
