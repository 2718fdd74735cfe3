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
