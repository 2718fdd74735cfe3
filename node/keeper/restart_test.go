package keeper

import (
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestRestartRefusal: an operator's restart of this node's Postgres is
// refused, with the reason, when the keeper would not bring it back (not
// registered, in maintenance, not running), during a switchover, and on a
// primary without a valid lease (it could not start writable again).
func TestRestartRefusal(t *testing.T) {
	primary := &pb.Node{Id: 1, Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY}
	standby := &pb.Node{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, UpstreamId: 1}
	inMaint := &pb.Node{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, Maintenance: true}
	st := &pb.ClusterState{Term: 1, Nodes: []*pb.Node{primary, standby}}
	sw := &pb.ClusterState{Term: 1, Nodes: []*pb.Node{primary, standby}, Switchover: &pb.Switchover{FromId: 1, ToId: 2, Term: 1}}
	for _, tc := range []struct {
		name       string
		st         *pb.ClusterState
		me         *pb.Node
		running    bool
		leaseValid bool
		want       string // "" allowed
	}{
		{"standby", st, standby, true, false, ""},
		{"primary with its lease", st, primary, true, true, ""},
		{"primary without a valid lease", st, primary, true, false, "holds no valid lease"},
		{"not registered", st, nil, true, false, "not registered"},
		{"in maintenance", st, inMaint, true, false, "in maintenance"},
		{"not running", st, standby, false, false, "not running"},
		{"switchover in flight", sw, standby, true, false, "switchover is in flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := restartRefusal("pgX", tc.st, tc.me, tc.running, tc.leaseValid)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}
