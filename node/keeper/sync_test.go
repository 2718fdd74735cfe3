package keeper

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/config"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestSyncNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		k     int
		want  string
	}{
		{"none", nil, 1, ""},
		{"one", []string{"pg2"}, 1, `ANY 1 ("pg2")`},
		{"two", []string{"pg2", "pg3"}, 1, `ANY 1 ("pg2", "pg3")`},
		{"two of three", []string{"pg2", "pg3", "pg4"}, 2, `ANY 2 ("pg2", "pg3", "pg4")`},
		{"k 0 is 1", []string{"pg2"}, 0, `ANY 1 ("pg2")`},
		{"quote in a name", []string{`a"b`}, 1, `ANY 1 ("a""b")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncNames(tc.names, tc.k); got != tc.want {
				t.Fatalf("syncNames(%v) = %q, want %q", tc.names, got, tc.want)
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
			a := &Keeper{cfg: cfg, syncExclude: tc.exclude, syncTerm: tc.excludeIn}
			if got := a.syncSetting(tc.st); got != tc.want {
				t.Fatalf("syncSetting on %s = %q, want %q", tc.node, got, tc.want)
			}
		})
	}
}

// TestSyncSettingCount: the count in synchronous_standby_names is
// max(k_f, target) on the primary (raising shows in Postgres first,
// lowering waits for the FSM) and what a promotion keeps on a standby;
// strict never names fewer than k and, with an empty set, names every
// other data node.
func TestSyncSettingCount(t *testing.T) {
	base := &pb.ClusterState{Term: 4, Settings: &pb.Settings{Synchronous: true, SynchronousCount: 2}, SyncStandbys: []uint32{2, 3, 4}, SyncCount: 2, Nodes: []*pb.Node{
		{Id: 1, Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY},
		{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY},
		{Id: 3, Name: "pg3", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY},
		{Id: 4, Name: "pg4", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY},
		{Id: 5, Name: "w1", Kind: pb.NodeKind_NODE_KIND_WITNESS, Role: pb.NodeRole_NODE_ROLE_WITNESS},
	}}
	with := func(f func(st *pb.ClusterState)) *pb.ClusterState {
		st := proto.Clone(base).(*pb.ClusterState)
		f(st)
		return st
	}
	for _, tc := range []struct {
		name, node string
		st         *pb.ClusterState
		exclude    map[uint32]bool
		want       string
	}{
		{"primary, k_f = k = 2", "pg1", base, nil, `ANY 2 ("pg2", "pg3", "pg4")`},
		{"raising k: Postgres first", "pg1", with(func(st *pb.ClusterState) { st.Settings.SynchronousCount = 3 }), nil, `ANY 3 ("pg2", "pg3", "pg4")`},
		{"lowering k: the committed count holds until the FSM lowers it", "pg1", with(func(st *pb.ClusterState) { st.Settings.SynchronousCount = 1 }), nil, `ANY 2 ("pg2", "pg3", "pg4")`},
		{"lowering k committed", "pg1", with(func(st *pb.ClusterState) { st.Settings.SynchronousCount = 1; st.SyncCount = 1 }), nil, `ANY 1 ("pg2", "pg3", "pg4")`},
		{"on: narrowing to two keeps ANY 2", "pg1", base, map[uint32]bool{4: true}, `ANY 2 ("pg2", "pg3")`},
		{"on: the count follows a narrowed, lowered set", "pg1", with(func(st *pb.ClusterState) { st.SyncCount = 1 }), map[uint32]bool{3: true, 4: true}, `ANY 1 ("pg2")`},
		{"strict: narrowed below k still asks for k", "pg1", with(func(st *pb.ClusterState) { st.Settings.SynchronousStrict = true; st.SyncCount = 1 }), map[uint32]bool{3: true, 4: true}, `ANY 2 ("pg2")`},
		{"strict, empty set: every other data node", "pg1", with(func(st *pb.ClusterState) {
			st.Settings.SynchronousStrict = true
			st.SyncStandbys = nil
			st.SyncCount = 0
		}), nil, `ANY 2 ("pg2", "pg3", "pg4")`},
		{"on, empty set: the lease gate", "pg1", with(func(st *pb.ClusterState) { st.SyncStandbys = nil; st.SyncCount = 0 }), nil, pgctl.GateApplicationName},
		{"a member runs with what a promotion keeps", "pg2", base, nil, `ANY 2 ("pg3", "pg4")`},
		{"a member of ANY 3 of 3 runs with ANY 2 of the rest", "pg2", with(func(st *pb.ClusterState) { st.Settings.SynchronousCount = 3; st.SyncCount = 3 }), nil, `ANY 2 ("pg3", "pg4")`},
		{"strict member of ANY 3 of 3 keeps asking for 3", "pg2", with(func(st *pb.ClusterState) {
			st.Settings.SynchronousCount = 3
			st.SyncCount = 3
			st.Settings.SynchronousStrict = true
		}), nil, `ANY 3 ("pg3", "pg4")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Keeper{cfg: &config.Config{Name: tc.node}, syncExclude: tc.exclude, syncTerm: 4}
			if got := a.syncSetting(tc.st); got != tc.want {
				t.Fatalf("syncSetting on %s = %q, want %q", tc.node, got, tc.want)
			}
		})
	}
}

// TestPlanSync: the keeper's order of operations, one step per round.
// FSM first for what weakens no commit's guarantee (widening, lowering k,
// the empty set); Postgres first, then the FSM, for what it must already
// wait for before the FSM relies on it (narrowing, raising k, widening
// from empty).
func TestPlanSync(t *testing.T) {
	on := func(k int32) *pb.Settings { return &pb.Settings{Synchronous: true, SynchronousCount: k} }
	strict := func(k int32) *pb.Settings {
		return &pb.Settings{Synchronous: true, SynchronousCount: k, SynchronousStrict: true}
	}
	ids := func(v ...uint32) []uint32 { return v }
	for _, tc := range []struct {
		name string
		cur  []uint32
		kf   int
		want []uint32
		s    *pb.Settings
		step syncStep
	}{
		{"steady", ids(2, 3, 4), 2, ids(2, 3, 4), on(2), syncStep{kind: syncStepNone}},
		{"empty, nobody streams", nil, 0, nil, on(2), syncStep{kind: syncStepNone}},
		{"widening from empty: Postgres first, ANY 2", nil, 0, ids(2, 3, 4), on(2), syncStep{kind: syncStepInclude, ids: ids(2, 3, 4), count: 2}},
		{"widening from empty, one streams (on): ANY 1", nil, 0, ids(3), on(2), syncStep{kind: syncStepInclude, ids: ids(3), count: 1}},
		{"widening from empty, one streams (strict): committed as ANY 1, Postgres waits for 2", nil, 0, ids(3), strict(2), syncStep{kind: syncStepInclude, ids: ids(3), count: 1}},
		{"widening: FSM first, same count", ids(2, 3), 2, ids(2, 3, 4), on(2), syncStep{kind: syncStepCommit, ids: ids(2, 3, 4), count: 2}},
		{"widening before narrowing", ids(2, 3), 2, ids(3, 4), on(2), syncStep{kind: syncStepCommit, ids: ids(2, 3, 4), count: 2}},
		{"narrowing 3 → 2 with k 2: Postgres first", ids(2, 3, 4), 2, ids(2, 3), on(2), syncStep{kind: syncStepNarrow, ids: ids(2, 3), count: 2, removed: ids(4)}},
		{"narrowing 3 → 1 with k 2 (on): lower k first, FSM first", ids(2, 3, 4), 2, ids(2), on(2), syncStep{kind: syncStepCommit, ids: ids(2, 3, 4), count: 1}},
		{"narrowing 3 → 1 once k is lowered: Postgres first", ids(2, 3, 4), 1, ids(2), on(2), syncStep{kind: syncStepNarrow, ids: ids(2), count: 1, removed: ids(3, 4)}},
		{"the last members go (on): the empty set first", ids(2, 3), 1, nil, on(2), syncStep{kind: syncStepCommit, ids: nil, count: 0}},
		{"raising k: Postgres first", ids(2, 3, 4), 1, ids(2, 3, 4), on(2), syncStep{kind: syncStepRaise, ids: ids(2, 3, 4), count: 2}},
		{"raising k above the set (on): up to its size", ids(2, 3), 1, ids(2, 3), on(3), syncStep{kind: syncStepRaise, ids: ids(2, 3), count: 2}},
		{"lowering k: FSM first", ids(2, 3, 4), 3, ids(2, 3, 4), on(1), syncStep{kind: syncStepCommit, ids: ids(2, 3, 4), count: 1}},
		{"strict with a member gone is not narrowed (want keeps it)", ids(2, 3), 2, ids(2, 3), strict(2), syncStep{kind: syncStepNone}},
		{"strict narrowing that keeps k", ids(2, 3, 4), 2, ids(2, 3), strict(2), syncStep{kind: syncStepNarrow, ids: ids(2, 3), count: 2, removed: ids(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planSync(tc.cur, tc.kf, tc.want, tc.s)
			if got.kind != tc.step.kind || !slices.Equal(got.ids, tc.step.ids) || got.count != tc.step.count || !slices.Equal(got.removed, tc.step.removed) {
				t.Fatalf("planSync(%v, k_f %d, want %v) = %+v, want %+v", tc.cur, tc.kf, tc.want, got, tc.step)
			}
		})
	}
}
