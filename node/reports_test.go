package node

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

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
	s := newReportStore(4)
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

	// The latest report survives the history wrapping around and a trim.
	for i := range int64(10) {
		s.put(reportAt(2, 100+i), t0.Add(3*time.Second))
	}
	s.trim(math.MaxInt64)
	if r, _, ok := s.get(1); !ok || r.AtUnixMs != 12 {
		t.Errorf("after wrap and trim, get(1) = %v, %v; want the report at 12", r, ok)
	}
}

func TestReportStoreSamples(t *testing.T) {
	// puts are (node, at) pairs, put in order.
	type put struct {
		node uint32
		at   int64
	}
	seq := func(n int) []put {
		var ps []put
		for i := range n {
			ps = append(ps, put{uint32(i%2 + 1), int64(10 * (i + 1))})
		}
		return ps
	}
	cases := []struct {
		name     string
		capacity int
		puts     []put
		node     uint32
		since    int64
		limit    int
		want     []string
	}{
		{name: "empty store", capacity: 4, want: []string{}},
		{name: "one sample", capacity: 4, puts: seq(1), want: []string{"1@10"}},
		{name: "below capacity, oldest first", capacity: 4, puts: seq(3), want: []string{"1@10", "2@20", "1@30"}},
		{name: "exactly at capacity", capacity: 4, puts: seq(4), want: []string{"1@10", "2@20", "1@30", "2@40"}},
		{name: "one past capacity drops the oldest", capacity: 4, puts: seq(5), want: []string{"2@20", "1@30", "2@40", "1@50"}},
		{name: "wrapped around more than once", capacity: 4, puts: seq(11), want: []string{"2@80", "1@90", "2@100", "1@110"}},
		{name: "capacity one keeps the newest", capacity: 1, puts: seq(3), want: []string{"1@30"}},
		{name: "filter by node", capacity: 8, puts: seq(6), node: 2, want: []string{"2@20", "2@40", "2@60"}},
		{name: "filter by unknown node", capacity: 8, puts: seq(6), node: 9, want: []string{}},
		{name: "since is inclusive", capacity: 8, puts: seq(6), since: 30, want: []string{"1@30", "2@40", "1@50", "2@60"}},
		{name: "since after everything", capacity: 8, puts: seq(6), since: 61, want: []string{}},
		{name: "limit keeps the newest", capacity: 8, puts: seq(6), limit: 2, want: []string{"1@50", "2@60"}},
		{name: "limit zero is no limit", capacity: 8, puts: seq(3), limit: 0, want: []string{"1@10", "2@20", "1@30"}},
		{name: "negative limit is no limit", capacity: 8, puts: seq(3), limit: -1, want: []string{"1@10", "2@20", "1@30"}},
		{name: "limit above the count", capacity: 8, puts: seq(3), limit: 10, want: []string{"1@10", "2@20", "1@30"}},
		{name: "node, since and limit together", capacity: 8, puts: seq(8), node: 1, since: 20, limit: 2, want: []string{"1@50", "1@70"}},
		{name: "filters after wrap-around", capacity: 4, puts: seq(7), node: 1, limit: 1, want: []string{"1@70"}},
		{
			name:     "order is arrival order, not timestamp order",
			capacity: 3,
			puts:     []put{{1, 50}, {1, 10}, {1, 40}, {1, 20}},
			want:     []string{"1@10", "1@40", "1@20"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newReportStore(tc.capacity)
			for _, p := range tc.puts {
				s.put(reportAt(p.node, p.at), time.Unix(0, 0))
			}
			if got := reportKeys(s.samples(tc.node, tc.since, tc.limit)); !slices.Equal(got, tc.want) {
				t.Errorf("samples(%d, %d, %d) = %v, want %v", tc.node, tc.since, tc.limit, got, tc.want)
			}
		})
	}
}

// samples hands out copies: a caller cannot change the history.
func TestReportStoreSamplesAreCopies(t *testing.T) {
	s := newReportStore(2)
	s.put(reportAt(1, 10), time.Unix(0, 0))
	got := s.samples(0, 0, 0)
	got[0].AtUnixMs = 99
	got[0].Name = "changed"
	if again := s.samples(0, 0, 0); again[0].AtUnixMs != 10 || again[0].Name != "n1" {
		t.Errorf("history changed through a returned sample: %v", again[0])
	}
}

func TestReportStoreTrim(t *testing.T) {
	cases := []struct {
		name        string
		capacity    int
		puts        int // reports at 10, 20, 30, … alternating nodes 1 and 2
		before      int64
		wantRemoved int
		want        []string
	}{
		{name: "empty store", capacity: 4, before: 100, wantRemoved: 0, want: []string{}},
		{name: "nothing old enough", capacity: 4, puts: 3, before: 10, wantRemoved: 0, want: []string{"1@10", "2@20", "1@30"}},
		{name: "cut-off is exclusive", capacity: 4, puts: 3, before: 20, wantRemoved: 1, want: []string{"2@20", "1@30"}},
		{name: "drops older samples", capacity: 8, puts: 5, before: 35, wantRemoved: 3, want: []string{"2@40", "1@50"}},
		{name: "drops everything", capacity: 4, puts: 3, before: 1000, wantRemoved: 3, want: []string{}},
		{name: "after wrap-around counts only what is kept", capacity: 4, puts: 7, before: 55, wantRemoved: 2, want: []string{"2@60", "1@70"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newReportStore(tc.capacity)
			for i := range tc.puts {
				s.put(reportAt(uint32(i%2+1), int64(10*(i+1))), time.Unix(0, 0))
			}
			if got := s.trim(tc.before); got != tc.wantRemoved {
				t.Errorf("trim(%d) removed %d, want %d", tc.before, got, tc.wantRemoved)
			}
			if got := reportKeys(s.samples(0, 0, 0)); !slices.Equal(got, tc.want) {
				t.Errorf("after trim: samples = %v, want %v", got, tc.want)
			}
			if got := s.trim(tc.before); got != 0 {
				t.Errorf("a second trim(%d) removed %d, want 0", tc.before, got)
			}
		})
	}
}

// After a trim the ring keeps filling in arrival order and the holes
// are overwritten in turn.
func TestReportStoreTrimThenWrap(t *testing.T) {
	s := newReportStore(3)
	for i := range 3 {
		s.put(reportAt(1, int64(10*(i+1))), time.Unix(0, 0)) // 10 20 30, full
	}
	if got := s.trim(25); got != 2 {
		t.Fatalf("trim removed %d, want 2", got)
	}
	s.put(reportAt(2, 40), time.Unix(0, 0)) // overwrites the hole left by 10
	if got, want := reportKeys(s.samples(0, 0, 0)), []string{"1@30", "2@40"}; !slices.Equal(got, want) {
		t.Errorf("samples = %v, want %v", got, want)
	}
	s.put(reportAt(2, 50), time.Unix(0, 0)) // overwrites the hole left by 20
	s.put(reportAt(2, 60), time.Unix(0, 0)) // overwrites 30
	if got, want := reportKeys(s.samples(0, 0, 0)), []string{"2@40", "2@50", "2@60"}; !slices.Equal(got, want) {
		t.Errorf("samples = %v, want %v", got, want)
	}
}

// The store is used by the gRPC handlers and the monitor at once.
func TestReportStoreConcurrent(t *testing.T) {
	s := newReportStore(16)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				s.put(reportAt(uint32(w+1), int64(i)), time.Unix(0, 0))
				s.get(uint32(w + 1))
				s.all()
				s.samples(0, 0, 5)
				if i%50 == 0 {
					s.trim(int64(i))
				}
			}
		}()
	}
	wg.Wait()
	if got := len(s.all()); got != 4 {
		t.Errorf("all() = %d reports, want 4", got)
	}
	if got := len(s.samples(0, 0, 0)); got > 16 {
		t.Errorf("history holds %d samples, more than its capacity 16", got)
	}
}

// A model of the ring: the history is the last `capacity` puts, minus the
// trimmed ones, in arrival order; the latest per node is the last put.
func TestReportStoreProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		capacity := rapid.IntRange(1, 6).Draw(t, "capacity")
		s := newReportStore(capacity)
		type entry struct {
			r     *pb.NodeReport
			alive bool
		}
		var model []entry
		latest := map[uint32]int64{}
		ring := func() []entry { return model[max(0, len(model)-capacity):] }

		steps := rapid.IntRange(0, 30).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0: // trim
				before := rapid.Int64Range(0, 12).Draw(t, "before")
				want := 0
				for i := max(0, len(model)-capacity); i < len(model); i++ {
					if model[i].alive && model[i].r.AtUnixMs < before {
						model[i].alive = false
						want++
					}
				}
				if got := s.trim(before); got != want {
					t.Fatalf("trim(%d) removed %d, want %d", before, got, want)
				}
			default: // put
				r := reportAt(rapid.Uint32Range(1, 3).Draw(t, "node"), rapid.Int64Range(0, 10).Draw(t, "at"))
				s.put(r, time.Unix(r.AtUnixMs, 0))
				model = append(model, entry{r: r, alive: true})
				latest[r.NodeId] = r.AtUnixMs
			}

			node := rapid.Uint32Range(0, 3).Draw(t, "filterNode")
			since := rapid.Int64Range(0, 11).Draw(t, "since")
			limit := rapid.IntRange(-1, 7).Draw(t, "limit")
			var want []*pb.NodeReport
			for _, e := range ring() {
				if e.alive && (node == 0 || e.r.NodeId == node) && e.r.AtUnixMs >= since {
					want = append(want, e.r)
				}
			}
			if limit > 0 && len(want) > limit {
				want = want[len(want)-limit:]
			}
			got := s.samples(node, since, limit)
			if !slices.Equal(reportKeys(got), reportKeys(want)) {
				t.Fatalf("samples(%d, %d, %d) = %v, want %v", node, since, limit, reportKeys(got), reportKeys(want))
			}
			for id, at := range latest {
				r, recv, ok := s.get(id)
				if !ok || r.AtUnixMs != at || recv.Unix() != at {
					t.Fatalf("get(%d) = %v, %v, %v; want the report at %d", id, r, recv, ok, at)
				}
			}
			if got := len(s.all()); got != len(latest) {
				t.Fatalf("all() has %d reports, want %d", got, len(latest))
			}
		}
	})
}
