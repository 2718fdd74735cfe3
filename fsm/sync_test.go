package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestChooseSyncQuorumProperty: with ANY k over n members, a write is
// acknowledged once k members received it, so the highest acknowledged
// position is the k-th highest received LSN. Whatever subset of members
// answers, ChooseSync either refuses or picks a member at or past it; and
// once n − k + 1 members answered (all promotable, no floor) it picks one.
func TestChooseSyncQuorumProperty(t *testing.T) {
	lease := &pb.Lease{HolderId: 1, Term: 3, Timeline: 2, FlushLsn: 1 << 20, DurationMs: 4000}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 6).Draw(t, "n")
		k := rapid.IntRange(1, n).Draw(t, "k")
		recv := make([]uint64, n)
		for i := range recv {
			recv[i] = uint64(rapid.IntRange(0, 50).Draw(t, fmt.Sprintf("recv%d", i))) * 100
		}
		sorted := slices.Clone(recv)
		slices.Sort(sorted)
		acked := sorted[n-k] // k members hold everything up to here
		members := make([]Candidate, n)
		promotable := map[uint32]bool{}
		answered := 0
		for i := range members {
			id := uint32(i + 2)
			members[i] = chooseCand(id, 100, recv[i], nil)
			if !rapid.Bool().Draw(t, fmt.Sprintf("answers%d", i)) {
				members[i].Answer = nil
			} else {
				answered++
			}
			promotable[id] = rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("promotable%d", i)) > 0
		}
		best, reasons := ChooseSync(members, promotable, lease, 0, k)
		if best != nil && best.Received < acked {
			t.Fatalf("n=%d k=%d received %v, %d answered: chose %s at %d, below the acknowledged %d (%v)",
				n, k, recv, answered, best.Node.Name, best.Received, acked, reasons)
		}
		if best != nil && answered < SyncAnswersNeeded(n, k) {
			t.Fatalf("n=%d k=%d: chose %s on %d answers, %d needed", n, k, best.Node.Name, answered, SyncAnswersNeeded(n, k))
		}
		allPromotable := true
		for _, m := range members {
			allPromotable = allPromotable && promotable[m.Node.Id]
		}
		if allPromotable && answered >= SyncAnswersNeeded(n, k) && best == nil {
			t.Fatalf("n=%d k=%d, %d answered, all promotable: no choice (%v)", n, k, answered, reasons)
		}
	})
}

func TestChooseSyncQuorum(t *testing.T) {
	lease := &pb.Lease{HolderId: 1, Term: 3, Timeline: 2, FlushLsn: 1000, DurationMs: 4000}
	all := map[uint32]bool{2: true, 3: true, 4: true}
	silent := func(c Candidate) Candidate { c.Answer = nil; return c }
	cases := []struct {
		name    string
		members []Candidate
		k       int
		want    uint32
		reason  string
	}{
		{"k=2 of 3: two answers suffice", []Candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 500, nil), silent(chooseCand(4, 100, 900, nil))}, 2, 2, ""},
		// n − k answers would be wrong: writes up to 900 are on pg2 and
		// pg4 (k = 2), and pg3 alone lacks them.
		{"k=2 of 3: one answer is not enough", []Candidate{silent(chooseCand(2, 100, 900, nil)), chooseCand(3, 100, 500, nil), silent(chooseCand(4, 100, 900, nil))}, 2, 0, "1 of the 3 synchronous standbys answered, 2 needed"},
		{"k=3 of 3: one answer suffices", []Candidate{silent(chooseCand(2, 100, 900, nil)), chooseCand(3, 100, 900, nil), silent(chooseCand(4, 100, 900, nil))}, 3, 3, ""},
		{"k=1 of 3: all must answer", []Candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 900, nil), silent(chooseCand(4, 100, 900, nil))}, 1, 0, "not answering: n4"},
		{"k above n is read as n", []Candidate{chooseCand(2, 100, 900, nil), silent(chooseCand(3, 100, 900, nil))}, 5, 2, ""},
		{"the most advanced answer wins", []Candidate{chooseCand(2, 100, 700, nil), chooseCand(3, 100, 800, nil), silent(chooseCand(4, 100, 900, nil))}, 2, 3, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			best, reasons := ChooseSync(tc.members, all, lease, 0, tc.k)
			switch {
			case tc.want == 0 && best != nil:
				t.Fatalf("chose %s, want none", best.Node.Name)
			case tc.want != 0 && (best == nil || best.Node.Id != tc.want):
				t.Fatalf("chose %v (%v), want n%d", best, reasons, tc.want)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(reasons, "; "), tc.reason) {
				t.Fatalf("reasons %v lack %q", reasons, tc.reason)
			}
		})
	}
}

// TestSyncQuorumCommands: SetSyncQuorum stores the set and count, refuses
// a count above the set's size, records synchronous_degraded when on mode
// narrows below synchronous_count; Promote lowers the count to what is
// left; config set refuses synchronous_count above the data nodes minus one
// and changes nothing.
func TestSyncQuorumCommands(t *testing.T) {
	m := New()
	idx := uint64(0)
	apply := func(cmd *pb.Command) error {
		idx++
		return m.Apply(idx, cmd).Err
	}
	must := func(cmd *pb.Command) {
		t.Helper()
		if err := apply(cmd); err != nil {
			t.Fatalf("apply %v: %v", cmd, err)
		}
	}
	must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{Synchronous: true, SynchronousCount: 2}}}})
	for _, name := range []string{"pg1", "pg2", "pg3", "pg4"} {
		must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: name, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
	}
	must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	for _, id := range []uint32{2, 3, 4} {
		must(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: id, UpstreamId: 1, Term: 1}}})
	}
	quorum := func(k uint32, ids ...uint32) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_SetSyncQuorum{SetSyncQuorum: &pb.SetSyncQuorum{Term: 1, PrimaryId: 1, NodeIds: ids, Count: k}}}
	}
	if err := apply(quorum(3, 2, 3)); err == nil || !strings.Contains(err.Error(), "count 3 is more than its 2 members") {
		t.Fatalf("count above the set: %v", err)
	}
	must(quorum(2, 2, 3, 4))
	if st := m.State(); SyncCount(st) != 2 || len(st.SyncStandbys) != 3 || SyncWarning(st) != "" {
		t.Fatalf("after ANY 2 of 3: count %d set %v warning %q", SyncCount(st), st.SyncStandbys, SyncWarning(st))
	}
	must(quorum(1, 2))
	st := m.State()
	if w := SyncWarning(st); !strings.Contains(w, "synchronous degraded") {
		t.Fatalf("ANY 1 of one with synchronous_count 2: warning %q", w)
	}
	if ev := st.Events[len(st.Events)-1]; ev.Type != EventSyncDegraded {
		t.Fatalf("last event %s %q, want %s", ev.Type, ev.Details, EventSyncDegraded)
	}
	must(quorum(2, 2, 3, 4))
	// pg2 promoted: ANY 2 of {pg3, pg4} is kept.
	must(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: EventFailover, LeaseSerial: m.State().Lease.Serial, LeaseMs: 4000, Timeline: 2, ReceivedLsn: 900}}})
	if st := m.State(); SyncCount(st) != 2 || !slices.Equal(st.SyncStandbys, []uint32{3, 4}) {
		t.Fatalf("after the promotion: ANY %d %v, want ANY 2 [3 4]", SyncCount(st), st.SyncStandbys)
	}
	// config set: 4 data nodes, so at most 3.
	before := m.State().Settings.ConfigVersion
	err := apply(&pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: &pb.SetConfig{Version: before, Changes: []*pb.ConfigChange{{Key: "synchronous_count", Value: "4"}}}}})
	if err == nil || !strings.Contains(err.Error(), "4 is more than the 3 standbys") || !strings.Contains(err.Error(), "4 data nodes") {
		t.Fatalf("synchronous_count 4 with 4 data nodes: %v", err)
	}
	if st := m.State(); st.Settings.ConfigVersion != before || st.Settings.SynchronousCount != 2 {
		t.Fatalf("a refused change changed the settings: version %d count %d", st.Settings.ConfigVersion, st.Settings.SynchronousCount)
	}
	must(&pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: &pb.SetConfig{Version: before, Changes: []*pb.ConfigChange{{Key: "synchronous_count", Value: "3"}, {Key: "synchronous", Value: "strict"}}}}})
	if s := m.State().Settings; s.SynchronousCount != 3 || !s.SynchronousStrict || !s.Synchronous {
		t.Fatalf("after synchronous_count=3 synchronous=strict: %v", s)
	}
}
