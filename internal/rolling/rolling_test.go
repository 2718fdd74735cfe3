package rolling

import (
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestBestSwitchoverTarget: the rolling restart switches over to the
// streaming standby with the least lag, then the highest priority; never
// to one that could not be promoted.
func TestBestSwitchoverTarget(t *testing.T) {
	sb := func(name string, lag int64, prio int32, f func(*pb.NodeView)) *pb.NodeView {
		n := &pb.NodeView{Name: name, Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, LagBytes: lag, Priority: prio,
			Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, WalReceiverStatus: "streaming"}}
		if f != nil {
			f(n)
		}
		return n
	}
	primary := &pb.NodeView{Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Priority: 100, Postgres: &pb.PostgresStatus{Running: true}}
	for _, tc := range []struct {
		name  string
		nodes []*pb.NodeView
		want  string
	}{
		{"least lag", []*pb.NodeView{primary, sb("pg2", 900, 100, nil), sb("pg3", 10, 100, nil)}, "pg3"},
		{"same lag: higher priority", []*pb.NodeView{primary, sb("pg2", 0, 50, nil), sb("pg3", 0, 100, nil)}, "pg3"},
		{"not streaming", []*pb.NodeView{primary, sb("pg2", 0, 100, func(n *pb.NodeView) { n.Postgres.WalReceiverStatus = "" }), sb("pg3", 500, 100, nil)}, "pg3"},
		{"maintenance, priority 0, nofailover, unknown lag", []*pb.NodeView{primary,
			sb("pg2", 0, 100, func(n *pb.NodeView) { n.Maintenance = true }),
			sb("pg3", 0, 0, nil),
			sb("pg4", 0, 100, func(n *pb.NodeView) { n.Tags = []string{"nofailover"} }),
			sb("pg5", -1, 100, nil)}, ""},
		{"a witness", []*pb.NodeView{primary, {Name: "w", Kind: pb.NodeKind_NODE_KIND_WITNESS, Priority: 100}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BestSwitchoverTarget(&pb.ShowResponse{Nodes: tc.nodes}, "pg1"); got != tc.want {
				t.Fatalf("target %q, want %q", got, tc.want)
			}
		})
	}
}
