package node

import (
	"strings"
	"testing"

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
		want       uint32 // 0: none
		reason     string
	}{
		{"empty set", nil, all, 0, "synchronous set is empty"},
		{"the most advanced member wins", []candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 900, nil)}, all, 3, ""},
		{"lag does not matter in synchronous mode", []candidate{chooseCand(2, 100, 10, nil)}, all, 2, ""},
		{"a silent member blocks", []candidate{chooseCand(2, 100, 900, nil), {Node: chooseCand(3, 100, 0, nil).Node}}, all, 0, "n3: a synchronous standby did not answer"},
		{"an unhealthy member blocks", []candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 100, func(a *pb.LSNResponse) { a.Healthy = false })}, all, 0, "n3: a synchronous standby did not answer"},
		{"an unpromotable member ahead blocks", []candidate{chooseCand(2, 100, 500, nil), chooseCand(3, 100, 900, nil)}, map[uint32]bool{2: true}, 0, "cannot be promoted has received more WAL"},
		{"an unpromotable member behind is fine", []candidate{chooseCand(2, 100, 900, nil), chooseCand(3, 100, 500, nil)}, map[uint32]bool{2: true}, 2, ""},
		{"no promotable member", []candidate{chooseCand(2, 100, 900, nil)}, map[uint32]bool{}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			best, reasons := chooseSync(tc.members, tc.promotable, lease)
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
	got := syncEligible(st, pg)
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("syncEligible = %v, want [2] (pg3 nosync, pg4 priority 0, pg5 not streaming yet, pg6 inactive)", got)
	}
}
