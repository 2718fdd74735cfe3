package node

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func reportAt(node uint32, at int64) *pb.NodeReport {
	return &pb.NodeReport{NodeId: node, Name: fmt.Sprintf("n%d", node), AtUnixMs: at}
}

// reportKeys renders samples as "node@at" for comparison.
func reportKeys(rs []*pb.NodeReport) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d@%d", r.NodeId, r.AtUnixMs))
	}
	return out
}

func TestReportStoreGetAndAll(t *testing.T) {
	s := newReportStore()
	t0 := time.Unix(1000, 0)
	if _, _, ok := s.get(1); ok {
		t.Fatal("get on an empty store found a report")
	}
	if got := s.all(); len(got) != 0 {
		t.Fatalf("all on an empty store = %v", got)
	}
	s.put(reportAt(1, 10), t0)
	s.put(reportAt(2, 11), t0.Add(time.Second))
	s.put(reportAt(1, 12), t0.Add(2*time.Second))

	r, at, ok := s.get(1)
	if !ok || r.AtUnixMs != 12 || !at.Equal(t0.Add(2*time.Second)) {
		t.Errorf("get(1) = %v, %v, %v; want the report at 12 received at t0+2s", r, at, ok)
	}
	r, at, ok = s.get(2)
	if !ok || r.AtUnixMs != 11 || !at.Equal(t0.Add(time.Second)) {
		t.Errorf("get(2) = %v, %v, %v; want the report at 11 received at t0+1s", r, at, ok)
	}
	if r, at, ok := s.get(3); ok || r != nil || !at.IsZero() {
		t.Errorf("get(3) = %v, %v, %v; want nothing", r, at, ok)
	}
	all := s.all()
	slices.SortFunc(all, func(a, b *pb.NodeReport) int { return int(a.NodeId) - int(b.NodeId) })
	if got, want := reportKeys(all), []string{"1@12", "2@11"}; !slices.Equal(got, want) {
		t.Errorf("all = %v, want %v", got, want)
	}
}

// The store is used by the gRPC handlers and the monitor at once.
func TestReportStoreConcurrent(t *testing.T) {
	s := newReportStore()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				s.put(reportAt(uint32(w+1), int64(i)), time.Unix(0, 0))
				s.get(uint32(w + 1))
				s.all()
			}
		}()
	}
	wg.Wait()
	if got := len(s.all()); got != 4 {
		t.Errorf("all() = %d reports, want 4", got)
	}
}
