package keeper

import (
	"strings"
	"testing"
	"time"

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
		rt         time.Duration // postgres.restart_timeout
		want       string        // "" allowed
	}{
		{"standby", st, standby, true, false, 10 * time.Second, ""},
		{"standby, restart_timeout 0", st, standby, true, false, 0, ""},
		{"primary with its lease", st, primary, true, true, 10 * time.Second, ""},
		{"primary, restart_timeout 0: never in place", st, primary, true, true, 0, "restart_timeout is 0"},
		{"primary without a valid lease", st, primary, true, false, 10 * time.Second, "holds no valid lease"},
		{"not registered", st, nil, true, false, 10 * time.Second, "not registered"},
		{"in maintenance", st, inMaint, true, false, 10 * time.Second, "in maintenance"},
		{"not running", st, standby, false, false, 10 * time.Second, "not running"},
		{"switchover in flight", sw, standby, true, false, 10 * time.Second, "switchover is in flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := restartRefusal("pgX", tc.st, tc.me, tc.running, tc.leaseValid, tc.rt)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}
