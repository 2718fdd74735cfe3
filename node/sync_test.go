package node

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestSyncNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		want  string
	}{
		{"none", nil, ""},
		{"one", []string{"pg2"}, `ANY 1 ("pg2")`},
		{"two", []string{"pg2", "pg3"}, `ANY 1 ("pg2", "pg3")`},
		{"quote in a name", []string{`a"b`}, `ANY 1 ("a""b")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncNames(tc.names); got != tc.want {
				t.Fatalf("syncNames(%v) = %q, want %q", tc.names, got, tc.want)
			}
		})
	}
}

func TestChooseSync(t *testing.T) {
	lease := &pb.Lease{HolderId: 1, Term: 3, Timeline: 2, FlushLsn: 1000, DurationMs: 4000}
	all := map[uint32]bool{2: true, 3: true, 4: true}
	cases := []struct {
		name       string
		members    []candidate
		promotable map[uint32]bool
		floor      uint64
		want       uint32 // 0: none
		reason     string
	}{
		{"empty set", nil, all, 0, 0, "synchronous set is empty"},
		{"the most advanced member wins", []candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 900, nil)}, all, 0, 3, ""},
		{"lag does not matter in synchronous mode", []candidate{chooseCand(2, 100, 10, nil)}, all, 0, 2, ""},
		{"a silent member blocks", []candidate{chooseCand(2, 100, 900, nil), {Node: chooseCand(3, 100, 0, nil).Node}}, all, 0, 0, "n3: a synchronous standby did not answer"},
		{"an unhealthy member blocks", []candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 100, func(a *pb.LSNResponse) { a.Healthy = false })}, all, 0, 0, "n3: a synchronous standby did not answer"},
		{"an unpromotable member ahead blocks", []candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 900, nil)}, map[uint32]bool{2: true}, 0, 0, "cannot be promoted has received more WAL"},
		{"an unpromotable member behind is fine", []candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 500, nil)}, map[uint32]bool{2: true}, 0, 2, ""},
		{"no promotable member", []candidate{chooseCand(2, 100, 900, nil)}, map[uint32]bool{}, 0, 0, ""},
		{"at the floor", []candidate{chooseCand(2, 100, 900, nil)}, all, 900, 2, ""},
		{"past the floor", []candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 1200, nil)}, all, 900, 3, ""},
		{"below the floor blocks", []candidate{chooseCand(2, 100, 899, nil)}, all, 900, 0, "less than the 0/384 the primary had when it was promoted"},
		{"the most advanced below the floor blocks", []candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 800, nil)}, all, 900, 0, "n3, the most advanced synchronous standby"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			best, reasons := chooseSync(tc.members, tc.promotable, lease, tc.floor)
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

func TestSyncEligible(t *testing.T) {
	st := &pb.ClusterState{Nodes: []*pb.Node{
		{Id: 1, Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Priority: 100, Active: true},
		{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Priority: 100, Active: true},
		{Id: 3, Name: "pg3", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Priority: 100, Active: true, Tags: []string{"nosync"}},
		{Id: 4, Name: "pg4", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Priority: 0, Active: true},
		{Id: 5, Name: "pg5", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Priority: 100, Active: true},
		{Id: 6, Name: "pg6", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Priority: 100, Active: false},
	}}
	pg := &pgctl.Status{Replication: []pgctl.ReplicationRow{
		{ApplicationName: "pg2", State: "streaming"}, {ApplicationName: "pg3", State: "streaming"},
		{ApplicationName: "pg4", State: "streaming"}, {ApplicationName: "pg5", State: "catchup"},
		{ApplicationName: "pg6", State: "streaming"},
	}}
	got := syncEligible(st, pg, false)
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("syncEligible = %v, want [2] (pg3 nosync, pg4 priority 0, pg5 not streaming yet, pg6 inactive)", got)
	}
	// After a promotion, members kept in the set stay eligible before they
	// stream (the grace), but only if otherwise eligible.
	st.SyncStandbys = []uint32{3, 5, 6}
	for _, tc := range []struct {
		keep bool
		want []uint32
	}{{false, []uint32{2}}, {true, []uint32{2, 5}}} {
		if got := syncEligible(st, pg, tc.keep); !slices.Equal(got, tc.want) {
			t.Fatalf("syncEligible(keep=%t) = %v, want %v", tc.keep, got, tc.want)
		}
	}
}

func TestSyncSetting(t *testing.T) {
	st := &pb.ClusterState{Term: 4, Settings: &pb.Settings{Synchronous: true}, SyncStandbys: []uint32{2, 3}, Nodes: []*pb.Node{
		{Id: 1, Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY},
		{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY},
		{Id: 3, Name: "pg3", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY},
		{Id: 4, Name: "pg4", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY},
		{Id: 5, Name: "w1", Kind: pb.NodeKind_NODE_KIND_WITNESS, Role: pb.NodeRole_NODE_ROLE_WITNESS},
	}}
	async := proto.Clone(st).(*pb.ClusterState)
	async.Settings.Synchronous = false
	emptySet := proto.Clone(st).(*pb.ClusterState)
	emptySet.SyncStandbys = nil
	onlyPG2 := proto.Clone(st).(*pb.ClusterState)
	onlyPG2.SyncStandbys = []uint32{2}
	for _, tc := range []struct {
		name, node string
		st         *pb.ClusterState
		exclude    map[uint32]bool
		excludeIn  uint64
		want       string
	}{
		{"primary", "pg1", st, nil, 0, `ANY 1 ("pg2", "pg3")`},
		{"primary narrowing", "pg1", st, map[uint32]bool{3: true}, 4, `ANY 1 ("pg2")`},
		{"an exclusion of an older term is void", "pg1", st, map[uint32]bool{3: true}, 3, `ANY 1 ("pg2", "pg3")`},
		{"a member runs with the rest of the set", "pg2", st, nil, 0, `ANY 1 ("pg3")`},
		{"a standby outside the set runs with all of it", "pg4", st, nil, 0, `ANY 1 ("pg2", "pg3")`},
		{"asynchronous mode: the lease gate", "pg1", async, nil, 0, pgctl.GateApplicationName},
		{"asynchronous mode, standby: the lease gate", "pg2", async, nil, 0, pgctl.GateApplicationName},
		{"asynchronous mode, gate disabled", "pg1", async, nil, 0, ""},
		{"synchronous mode, empty set: the lease gate", "pg1", emptySet, nil, 0, pgctl.GateApplicationName},
		{"synchronous mode, the only member promoted: the lease gate", "pg2", onlyPG2, nil, 0, pgctl.GateApplicationName},
		{"synchronous mode, narrowed to nothing: the lease gate", "pg1", onlyPG2, map[uint32]bool{2: true}, 4, pgctl.GateApplicationName},
		{"synchronous mode, empty set, gate disabled", "pg1", emptySet, nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{Name: tc.node}
			if strings.Contains(tc.name, "gate disabled") {
				cfg.Postgres = &config.PostgresConfig{DisableLeaseGate: true}
			}
			a := &pgAgent{n: &Node{cfg: cfg}, syncExclude: tc.exclude, syncTerm: tc.excludeIn}
			if got := a.syncSetting(tc.st); got != tc.want {
				t.Fatalf("syncSetting on %s = %q, want %q", tc.node, got, tc.want)
			}
		})
	}
}

// TestChooseSyncAfterPromotion: the committed state after a promotion in
// synchronous mode (through the FSM) still names a synchronous set, so a
// failure of the new primary fails over to the remaining member — once it
// has received what the new primary had when it was promoted.
func TestChooseSyncAfterPromotion(t *testing.T) {
	m := fsm.New()
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
	apply(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 3, Term: 2, Reason: fsm.EventFailover, LeaseSerial: m.State().Lease.Serial, LeaseMs: 4000, Timeline: 2, ReceivedLsn: 900}}})
	st := m.State()
	members := syncMembers(st)
	if len(members) != 2 || members[0].Id != 2 || members[1].Id != 4 {
		t.Fatalf("synchronous set after the promotion of pg3: %v, want pg2 and pg4", members)
	}
	cands, _ := promotable(st)
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
			answers := make([]candidate, len(members))
			for i, n := range members {
				lsn := map[uint32]uint64{2: tc.pg2, 4: tc.pg4}[n.Id]
				answers[i] = candidate{Node: n, Answer: &pb.LSNResponse{NodeId: n.Id, Timeline: 2, Healthy: true,
					Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, ReceiveLsn: lsn, ReplayLsn: lsn}}}
			}
			best, reasons := chooseSync(answers, ok, lease, st.SyncFloorLsn)
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
