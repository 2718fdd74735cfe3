package fsm

import (
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestChooseSync(t *testing.T) {
	lease := &pb.Lease{HolderId: 1, Term: 3, Timeline: 2, FlushLsn: 1000, DurationMs: 4000}
	all := map[uint32]bool{2: true, 3: true, 4: true}
	cases := []struct {
		name       string
		members    []Candidate
		promotable map[uint32]bool
		floor      uint64
		want       uint32 // 0: none
		reason     string
	}{
		{"empty set", nil, all, 0, 0, "synchronous set is empty"},
		{"the most advanced member wins", []Candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 900, nil)}, all, 0, 3, ""},
		{"lag does not matter in synchronous mode", []Candidate{chooseCand(2, 100, 10, nil)}, all, 0, 2, ""},
		{"a silent member blocks", []Candidate{chooseCand(2, 100, 900, nil), {Node: chooseCand(3, 100, 0, nil).Node}}, all, 0, 0, "not answering: n3"},
		{"an unhealthy member blocks", []Candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 100, func(a *pb.LSNResponse) { a.Healthy = false })}, all, 0, 0, "not answering: n3"},
		{"an unpromotable member ahead blocks", []Candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 900, nil)}, map[uint32]bool{2: true}, 0, 0, "cannot be promoted has received more WAL"},
		{"an unpromotable member behind is fine", []Candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 500, nil)}, map[uint32]bool{2: true}, 0, 2, ""},
		{"no promotable member", []Candidate{chooseCand(2, 100, 900, nil)}, map[uint32]bool{}, 0, 0, ""},
		{"at the floor", []Candidate{chooseCand(2, 100, 900, nil)}, all, 900, 2, ""},
		{"past the floor", []Candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 1200, nil)}, all, 900, 3, ""},
		{"below the floor blocks", []Candidate{chooseCand(2, 100, 899, nil)}, all, 900, 0, "less than the 0/384 the primary had when it was promoted"},
		{"the most advanced below the floor blocks", []Candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 800, nil)}, all, 900, 0, "n3, the most advanced synchronous standby"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			best, reasons := ChooseSync(tc.members, tc.promotable, lease, tc.floor, 1)
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

// TestChooseSyncAfterPromotion: the committed state after a promotion in
// synchronous mode (through the FSM) still names a synchronous set, so a
// failure of the new primary fails over to the remaining member — once it
// has received what the new primary had when it was promoted.
func TestChooseSyncAfterPromotion(t *testing.T) {
	m := New()
	idx := uint64(0)
	apply := func(cmd *pb.Command) {
		t.Helper()
		idx++
		if r := m.Apply(idx, cmd); r.Err != nil {
			t.Fatalf("apply %v: %v", cmd, r.Err)
		}
	}
	apply(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{Synchronous: true}}}})
	for _, name := range []string{"pg1", "pg2", "pg3", "pg4"} {
		apply(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: name, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
	}
	apply(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	for _, id := range []uint32{2, 3, 4} {
		apply(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: id, UpstreamId: 1, Term: 1}}})
	}
	apply(&pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: []uint32{2, 3, 4}}}})
	// pg1 fails; pg3 (at 900, the most advanced) is promoted.
	apply(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 3, Term: 2, Reason: EventFailover, LeaseSerial: m.State().Lease.Serial, LeaseMs: 4000, Timeline: 2, ReceivedLsn: 900}}})
	st := m.State()
	members := SyncMembers(st)
	if len(members) != 2 || members[0].Id != 2 || members[1].Id != 4 {
		t.Fatalf("synchronous set after the promotion of pg3: %v, want pg2 and pg4", members)
	}
	cands, _ := Promotable(st)
	ok := map[uint32]bool{}
	for _, c := range cands {
		ok[c.Id] = true
	}
	lease := &pb.Lease{HolderId: 3, Term: 2, Timeline: 2}
	for _, tc := range []struct {
		name         string
		pg2, pg4     uint64
		want, reason string
	}{
		{"pg4 streamed from pg3 past the floor", 850, 1500, "pg4", ""},
		{"both streamed from pg3", 1500, 1400, "pg2", ""},
		{"neither reached the floor yet", 850, 800, "", "the primary had when it was promoted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := make([]Candidate, len(members))
			for i, n := range members {
				lsn := map[uint32]uint64{2: tc.pg2, 4: tc.pg4}[n.Id]
				answers[i] = Candidate{Node: n, Answer: &pb.LSNResponse{NodeId: n.Id, Timeline: 2, Healthy: true,
					Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, ReceiveLsn: lsn, ReplayLsn: lsn}}}
			}
			best, reasons := ChooseSync(answers, ok, lease, st.SyncFloorLsn, 1)
			got := ""
			if best != nil {
				got = best.Node.Name
			}
			if got != tc.want {
				t.Fatalf("chose %q (%v), want %q", got, reasons, tc.want)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(reasons, "; "), tc.reason) {
				t.Fatalf("reasons %v lack %q", reasons, tc.reason)
			}
		})
	}
}
