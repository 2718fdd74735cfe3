package fsm

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestLeaseExpired(t *testing.T) {
	applied := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	held := func() *pb.Lease { return &pb.Lease{HolderId: 1, Term: 3, DurationMs: 4000} }
	// 4 s lease + 10 % drift: the primary is failed strictly after applied+4.4s.
	deadline := applied.Add(4400 * time.Millisecond)
	cases := []struct {
		name  string
		lease *pb.Lease
		now   time.Time
		drift int
		want  bool
	}{
		{name: "nil lease never expires", lease: nil, now: applied.Add(time.Hour), drift: 10, want: false},
		{name: "zero holder never expires", lease: &pb.Lease{DurationMs: 4000}, now: applied.Add(time.Hour), drift: 10, want: false},
		{name: "zero holder released is not an expiry", lease: &pb.Lease{DurationMs: 4000, Released: true}, now: applied.Add(time.Hour), drift: 10, want: false},
		{name: "released expires at once", lease: &pb.Lease{HolderId: 1, DurationMs: 4000, Released: true}, now: applied, drift: 10, want: true},
		{name: "released expires even before it was applied", lease: &pb.Lease{HolderId: 1, DurationMs: 4000, Released: true}, now: applied.Add(-time.Second), drift: 10, want: true},
		{name: "just applied", lease: held(), now: applied, drift: 10, want: false},
		{name: "clock before apply time", lease: held(), now: applied.Add(-time.Minute), drift: 10, want: false},
		{name: "at lease without drift margin", lease: held(), now: applied.Add(4 * time.Second), drift: 10, want: false},
		{name: "inside the drift margin", lease: held(), now: deadline.Add(-time.Nanosecond), drift: 10, want: false},
		{name: "exactly at lease plus drift", lease: held(), now: deadline, drift: 10, want: false},
		{name: "one nanosecond after lease plus drift", lease: held(), now: deadline.Add(time.Nanosecond), drift: 10, want: true},
		{name: "long after", lease: held(), now: applied.Add(time.Minute), drift: 10, want: true},
		{name: "no drift margin: exactly at lease", lease: held(), now: applied.Add(4 * time.Second), drift: 0, want: false},
		{name: "no drift margin: just after lease", lease: held(), now: applied.Add(4*time.Second + time.Nanosecond), drift: 0, want: true},
		{name: "100 percent drift: at double lease", lease: held(), now: applied.Add(8 * time.Second), drift: 100, want: false},
		{name: "100 percent drift: after double lease", lease: held(), now: applied.Add(8*time.Second + time.Nanosecond), drift: 100, want: true},
		{name: "odd duration keeps sub-millisecond margin", lease: &pb.Lease{HolderId: 1, DurationMs: 1001}, now: applied.Add(1101100 * time.Microsecond), drift: 10, want: false},
		{name: "odd duration, just past", lease: &pb.Lease{HolderId: 1, DurationMs: 1001}, now: applied.Add(1101100*time.Microsecond + time.Nanosecond), drift: 10, want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := LeaseExpired(tc.lease, applied, tc.now, tc.drift); got != tc.want {
				t.Errorf("LeaseExpired(%v, applied, applied%+v, %d) = %v, want %v", tc.lease, tc.now.Sub(applied), tc.drift, got, tc.want)
			}
		})
	}
}

// The boundary, for any duration and drift: not expired at
// applied+lease+drift, expired one nanosecond later.
func TestLeaseExpiredPropertyBoundary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := rapid.Int64Range(1, 600_000).Draw(t, "durationMs")
		drift := rapid.IntRange(0, 100).Draw(t, "drift")
		applied := time.Unix(0, 0).Add(time.Duration(rapid.Int64Range(0, 1<<40).Draw(t, "applied")))
		l := &pb.Lease{HolderId: 1, DurationMs: ms}
		d := time.Duration(ms) * time.Millisecond
		deadline := applied.Add(d + d*time.Duration(drift)/100)
		if LeaseExpired(l, applied, deadline, drift) {
			t.Fatalf("expired exactly at the deadline")
		}
		if !LeaseExpired(l, applied, deadline.Add(time.Nanosecond), drift) {
			t.Fatalf("not expired after the deadline")
		}
		if LeaseExpired(l, applied, applied.Add(d), drift) {
			t.Fatalf("expired at the bare lease duration, before the drift margin")
		}
	})
}

func TestPromotable(t *testing.T) {
	data := pb.NodeKind_NODE_KIND_DATA
	standby := pb.NodeRole_NODE_ROLE_STANDBY
	node := func(id uint32, name string, f func(*pb.Node)) *pb.Node {
		n := &pb.Node{Id: id, Name: name, Kind: data, Role: standby, UpstreamId: 1, Priority: 100, Active: true}
		if f != nil {
			f(n)
		}
		return n
	}
	cases := []struct {
		name     string
		nodes    []*pb.Node
		wantIDs  []uint32
		wantSkip map[string]string
	}{
		{name: "empty cluster", nodes: nil, wantIDs: nil, wantSkip: map[string]string{}},
		{name: "healthy standby", nodes: []*pb.Node{node(2, "b", nil)}, wantIDs: []uint32{2}, wantSkip: map[string]string{}},
		{
			name:     "primary left out silently",
			nodes:    []*pb.Node{node(1, "a", func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_PRIMARY; n.UpstreamId = 0 })},
			wantSkip: map[string]string{},
		},
		{
			name:     "witness left out silently",
			nodes:    []*pb.Node{node(9, "w", func(n *pb.Node) { n.Kind = pb.NodeKind_NODE_KIND_WITNESS; n.Role = pb.NodeRole_NODE_ROLE_WITNESS })},
			wantSkip: map[string]string{},
		},
		{
			name:     "witness kind with a standby role left out silently",
			nodes:    []*pb.Node{node(9, "w", func(n *pb.Node) { n.Kind = pb.NodeKind_NODE_KIND_WITNESS })},
			wantSkip: map[string]string{},
		},
		{
			name:     "unspecified kind left out silently",
			nodes:    []*pb.Node{node(9, "x", func(n *pb.Node) { n.Kind = pb.NodeKind_NODE_KIND_UNSPECIFIED })},
			wantSkip: map[string]string{},
		},
		{
			name:     "priority 0",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Priority = 0 })},
			wantSkip: map[string]string{"b": "priority 0"},
		},
		{
			name:     "negative priority",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Priority = -5 })},
			wantSkip: map[string]string{"b": "priority 0"},
		},
		{
			name:     "nofailover tag",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Tags = []string{"dc2", "nofailover"} })},
			wantSkip: map[string]string{"b": "tagged nofailover"},
		},
		{
			name:    "other tags do not matter",
			nodes:   []*pb.Node{node(2, "b", func(n *pb.Node) { n.Tags = []string{"nofailover-later", "dc2"} })},
			wantIDs: []uint32{2}, wantSkip: map[string]string{},
		},
		{
			name:     "inactive",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Active = false })},
			wantSkip: map[string]string{"b": "inactive (has not rejoined)"},
		},
		{
			name:     "unregistered data node",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_UNSPECIFIED; n.Active = false })},
			wantSkip: map[string]string{"b": "not a registered standby"},
		},
		{
			name:     "data node with a witness role",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_WITNESS })},
			wantSkip: map[string]string{"b": "not a registered standby"},
		},
		{
			name:     "first reason wins: inactive with priority 0",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Active = false; n.Priority = 0 })},
			wantSkip: map[string]string{"b": "inactive (has not rejoined)"},
		},
		{
			name:     "first reason wins: priority 0 and nofailover",
			nodes:    []*pb.Node{node(2, "b", func(n *pb.Node) { n.Priority = 0; n.Tags = []string{"nofailover"} })},
			wantSkip: map[string]string{"b": "priority 0"},
		},
		{
			name: "mixed cluster keeps table order",
			nodes: []*pb.Node{
				node(1, "a", func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_PRIMARY; n.UpstreamId = 0 }),
				node(2, "b", nil),
				node(3, "c", func(n *pb.Node) { n.Priority = 0 }),
				node(4, "d", func(n *pb.Node) { n.Tags = []string{"nofailover"} }),
				node(5, "e", func(n *pb.Node) { n.Active = false }),
				node(6, "f", nil),
				node(7, "w", func(n *pb.Node) { n.Kind = pb.NodeKind_NODE_KIND_WITNESS; n.Role = pb.NodeRole_NODE_ROLE_WITNESS }),
				node(8, "h", func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_UNSPECIFIED }),
			},
			wantIDs: []uint32{2, 6},
			wantSkip: map[string]string{
				"c": "priority 0", "d": "tagged nofailover", "e": "inactive (has not rejoined)", "h": "not a registered standby",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cands, skipped := Promotable(&pb.ClusterState{Nodes: tc.nodes})
			var ids []uint32
			for _, c := range cands {
				ids = append(ids, c.Id)
			}
			if !slices.Equal(ids, tc.wantIDs) {
				t.Errorf("candidates = %v, want %v", ids, tc.wantIDs)
			}
			if !maps.Equal(skipped, tc.wantSkip) {
				t.Errorf("skipped = %v, want %v", skipped, tc.wantSkip)
			}
		})
	}
}

// chooseCand builds a Candidate that answered; mutate it for the case.
func chooseCand(id uint32, prio int32, receive uint64, f func(*pb.LSNResponse)) Candidate {
	a := &pb.LSNResponse{
		NodeId:   id,
		Timeline: 2,
		Healthy:  true,
		Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, Timeline: 2, ReceiveLsn: receive, ReplayLsn: receive},
	}
	if f != nil {
		f(a)
	}
	return Candidate{Node: &pb.Node{Id: id, Name: fmt.Sprintf("n%d", id), Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Priority: prio, Active: true}, Answer: a}
}

func TestChoose(t *testing.T) {
	lease := &pb.Lease{HolderId: 1, Term: 3, Timeline: 2, FlushLsn: 1000, DurationMs: 4000}
	const maxLag = 100
	cases := []struct {
		name         string
		cands        []Candidate
		lease        *pb.Lease
		synchronous  bool
		wantID       uint32 // 0: nobody
		wantReceived uint64
		wantReasons  []string // substrings, one per reason, in order
	}{
		{name: "no candidates", lease: lease},
		{
			name:        "did not answer",
			cands:       []Candidate{{Node: &pb.Node{Id: 2, Name: "n2", Priority: 1}}},
			lease:       lease,
			wantReasons: []string{"n2: did not answer"},
		},
		{
			name:        "unhealthy",
			cands:       []Candidate{chooseCand(2, 1, 1000, func(a *pb.LSNResponse) { a.Healthy = false; a.Reason = "disk full" })},
			lease:       lease,
			wantReasons: []string{"n2: unhealthy (disk full)"},
		},
		{
			name:        "not running",
			cands:       []Candidate{chooseCand(2, 1, 1000, func(a *pb.LSNResponse) { a.Postgres.Running = false })},
			lease:       lease,
			wantReasons: []string{"n2: Postgres is not running in recovery"},
		},
		{
			name:        "not in recovery",
			cands:       []Candidate{chooseCand(2, 1, 1000, func(a *pb.LSNResponse) { a.Postgres.InRecovery = false })},
			lease:       lease,
			wantReasons: []string{"n2: Postgres is not running in recovery"},
		},
		{
			name:        "no Postgres status",
			cands:       []Candidate{chooseCand(2, 1, 1000, func(a *pb.LSNResponse) { a.Postgres = nil })},
			lease:       lease,
			wantReasons: []string{"n2: Postgres is not running in recovery"},
		},
		{
			name:        "wrong timeline",
			cands:       []Candidate{chooseCand(2, 1, 1000, func(a *pb.LSNResponse) { a.Timeline = 1 })},
			lease:       lease,
			wantReasons: []string{"n2: on timeline 1, the primary was on 2"},
		},
		{
			name:         "lease without a timeline accepts any timeline",
			cands:        []Candidate{chooseCand(2, 1, 1000, func(a *pb.LSNResponse) { a.Timeline = 5 })},
			lease:        &pb.Lease{HolderId: 1, FlushLsn: 1000},
			wantID:       2,
			wantReceived: 1000,
		},
		{
			name:        "lag beyond maximum_lag_on_failover in async mode",
			cands:       []Candidate{chooseCand(2, 1, 899, nil)},
			lease:       lease,
			wantReasons: []string{"n2: 101 bytes behind the primary's last flush, more than maximum_lag_on_failover (100)"},
		},
		{
			name:         "lag exactly maximum_lag_on_failover in async mode",
			cands:        []Candidate{chooseCand(2, 1, 900, nil)},
			lease:        lease,
			wantID:       2,
			wantReceived: 900,
		},
		{
			name:         "lag beyond the maximum does not matter in synchronous mode",
			cands:        []Candidate{chooseCand(2, 1, 10, nil)},
			lease:        lease,
			synchronous:  true,
			wantID:       2,
			wantReceived: 10,
		},
		{
			name:         "ahead of the lease's flush LSN",
			cands:        []Candidate{chooseCand(2, 1, 1200, nil)},
			lease:        lease,
			wantID:       2,
			wantReceived: 1200,
		},
		{
			name:         "nil lease: no timeline or lag check",
			cands:        []Candidate{chooseCand(2, 1, 0, func(a *pb.LSNResponse) { a.Timeline = 7 })},
			lease:        nil,
			wantID:       2,
			wantReceived: 0,
		},
		{
			name:         "replay LSN counts when the receive LSN is lower",
			cands:        []Candidate{chooseCand(2, 1, 0, func(a *pb.LSNResponse) { a.Postgres.ReplayLsn = 950 })},
			lease:        lease,
			wantID:       2,
			wantReceived: 950,
		},
		{
			name: "highest received LSN wins over priority and id",
			cands: []Candidate{
				chooseCand(2, 100, 990, nil),
				chooseCand(3, 1, 1000, nil),
				chooseCand(4, 100, 995, nil),
			},
			lease:        lease,
			wantID:       3,
			wantReceived: 1000,
		},
		{
			name: "tie on LSN: higher priority wins",
			cands: []Candidate{
				chooseCand(2, 10, 1000, nil),
				chooseCand(3, 50, 1000, nil),
				chooseCand(4, 20, 1000, nil),
			},
			lease:        lease,
			wantID:       3,
			wantReceived: 1000,
		},
		{
			name: "tie on LSN and priority: lower id wins",
			cands: []Candidate{
				chooseCand(5, 10, 1000, nil),
				chooseCand(3, 10, 1000, nil),
				chooseCand(4, 10, 1000, nil),
			},
			lease:        lease,
			wantID:       3,
			wantReceived: 1000,
		},
		{
			name: "an ineligible Candidate with more WAL does not win",
			cands: []Candidate{
				chooseCand(2, 1, 2000, func(a *pb.LSNResponse) { a.Timeline = 3 }),
				chooseCand(3, 1, 950, nil),
				{Node: &pb.Node{Id: 4, Name: "n4", Priority: 100}},
			},
			lease:        lease,
			wantID:       3,
			wantReceived: 950,
			wantReasons:  []string{"n2: on timeline 3", "n4: did not answer"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reasons := Choose(tc.cands, tc.lease, maxLag, tc.synchronous)
			var gotID uint32
			if got != nil {
				gotID = got.Node.Id
				if got.Received != tc.wantReceived {
					t.Errorf("winner received = %d, want %d", got.Received, tc.wantReceived)
				}
			}
			if gotID != tc.wantID {
				t.Errorf("winner = %d, want %d (reasons %q)", gotID, tc.wantID, reasons)
			}
			if len(reasons) != len(tc.wantReasons) {
				t.Fatalf("reasons = %q, want %d matching %q", reasons, len(tc.wantReasons), tc.wantReasons)
			}
			for i, want := range tc.wantReasons {
				if !strings.Contains(reasons[i], want) {
					t.Errorf("reason %d = %q, want it to contain %q", i, reasons[i], want)
				}
			}
		})
	}
}

// genChooseInput draws a few candidates with distinct ids and small LSN,
// priority and timeline domains (so ties and boundaries are frequent), and a
// lease.
func genChooseInput(t *rapid.T) ([]Candidate, *pb.Lease, uint64, bool) {
	n := rapid.IntRange(0, 6).Draw(t, "n")
	ids := rapid.Permutation([]uint32{1, 2, 3, 4, 5, 6, 7, 8}).Draw(t, "ids")[:n]
	cands := make([]Candidate, n)
	for i, id := range ids {
		cands[i].Node = &pb.Node{Id: id, Name: fmt.Sprintf("n%d", id), Kind: pb.NodeKind_NODE_KIND_DATA, Priority: rapid.Int32Range(1, 3).Draw(t, "priority")}
		if rapid.IntRange(0, 5).Draw(t, "answered") == 0 {
			continue
		}
		a := &pb.LSNResponse{
			NodeId:   id,
			Healthy:  rapid.IntRange(0, 5).Draw(t, "healthy") > 0,
			Timeline: rapid.Uint32Range(1, 2).Draw(t, "timeline"),
		}
		if rapid.IntRange(0, 7).Draw(t, "hasStatus") > 0 {
			a.Postgres = &pb.PostgresStatus{
				Running:    rapid.IntRange(0, 5).Draw(t, "running") > 0,
				InRecovery: rapid.IntRange(0, 5).Draw(t, "inRecovery") > 0,
				ReceiveLsn: rapid.Uint64Range(0, 8).Draw(t, "receive") * 10,
				ReplayLsn:  rapid.Uint64Range(0, 8).Draw(t, "replay") * 10,
			}
		}
		cands[i].Answer = a
	}
	var lease *pb.Lease
	if rapid.IntRange(0, 7).Draw(t, "hasLease") > 0 {
		lease = &pb.Lease{HolderId: 9, Timeline: rapid.Uint32Range(0, 2).Draw(t, "leaseTimeline"), FlushLsn: rapid.Uint64Range(0, 8).Draw(t, "flush") * 10}
	}
	maxLag := rapid.Uint64Range(0, 4).Draw(t, "maxLag") * 10
	return cands, lease, maxLag, rapid.Bool().Draw(t, "synchronous")
}

// chooseModel is the rule from DESIGN.md, written independently: whether a
// Candidate is eligible and the WAL position it is compared on.
func chooseModel(c Candidate, lease *pb.Lease, maxLag uint64, synchronous bool) (bool, uint64) {
	a := c.Answer
	if a == nil || !a.Healthy || a.Postgres == nil || !a.Postgres.Running || !a.Postgres.InRecovery {
		return false, 0
	}
	if lease != nil && lease.Timeline != 0 && a.Timeline != lease.Timeline {
		return false, 0
	}
	recv := max(a.Postgres.ReceiveLsn, a.Postgres.ReplayLsn)
	if !synchronous && lease != nil && lease.FlushLsn > recv+maxLag {
		return false, recv
	}
	return true, recv
}

func TestChooseProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cands, lease, maxLag, sync := genChooseInput(t)
		type elig struct {
			id   uint32
			prio int32
			recv uint64
		}
		var eligible []elig
		for _, c := range cands {
			if ok, recv := chooseModel(c, lease, maxLag, sync); ok {
				eligible = append(eligible, elig{c.Node.Id, c.Node.Priority, recv})
			}
		}
		win, reasons := Choose(slices.Clone(cands), lease, maxLag, sync)

		if (win == nil) != (len(eligible) == 0) {
			t.Fatalf("winner %v but %d eligible candidates %v (reasons %q)", win, len(eligible), eligible, reasons)
		}
		if len(reasons) != len(cands)-len(eligible) {
			t.Fatalf("%d reasons %q for %d ineligible candidates", len(reasons), reasons, len(cands)-len(eligible))
		}
		if win == nil {
			return
		}
		i := slices.IndexFunc(eligible, func(e elig) bool { return e.id == win.Node.Id })
		if i < 0 {
			t.Fatalf("winner %d is not eligible (eligible: %v)", win.Node.Id, eligible)
		}
		w := eligible[i]
		if win.Received != w.recv {
			t.Fatalf("winner's received = %d, want max(receive, replay) = %d", win.Received, w.recv)
		}
		for _, e := range eligible {
			switch {
			case e.recv > w.recv:
				t.Fatalf("eligible %d has received %d, more than winner %d's %d", e.id, e.recv, w.id, w.recv)
			case e.recv == w.recv && e.prio > w.prio:
				t.Fatalf("eligible %d ties on LSN with a higher priority %d than winner %d's %d", e.id, e.prio, w.id, w.prio)
			case e.recv == w.recv && e.prio == w.prio && e.id < w.id:
				t.Fatalf("eligible %d ties on LSN and priority with a lower id than winner %d", e.id, w.id)
			}
		}
	})
}

func TestChoosePropertyOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cands, lease, maxLag, sync := genChooseInput(t)
		shuffled := rapid.Permutation(slices.Clone(cands)).Draw(t, "shuffled")
		a, _ := Choose(slices.Clone(cands), lease, maxLag, sync)
		b, _ := Choose(shuffled, lease, maxLag, sync)
		if (a == nil) != (b == nil) || (a != nil && (a.Node.Id != b.Node.Id || a.Received != b.Received)) {
			t.Fatalf("choose depends on order: %v vs %v", a, b)
		}
	})
}

// The reasons name every left-out Candidate, in input order.
func TestChoosePropertyReasonsNameCandidates(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cands, lease, maxLag, sync := genChooseInput(t)
		_, reasons := Choose(slices.Clone(cands), lease, maxLag, sync)
		j := 0
		for _, c := range cands {
			if ok, _ := chooseModel(c, lease, maxLag, sync); ok {
				continue
			}
			if j >= len(reasons) || !strings.HasPrefix(reasons[j], c.Node.Name+": ") {
				t.Fatalf("reasons %q do not name %s at position %d", reasons, c.Node.Name, j)
			}
			j++
		}
	})
}
