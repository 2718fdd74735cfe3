package rolling

import (
	"slices"
	"strings"
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

// TestOrderRestart: raising keeps standbys first then the switchover;
// lowering a hot-standby setting restarts the primary first, in place.
func TestOrderRestart(t *testing.T) {
	sb := func(n string) Step { return Step{StepRestart, n} }
	inPlace := Step{StepPrimaryInPlace, "pg1"}
	sw := Step{StepSwitchover, "pg1"}
	low := []string{"max_connections 150 → 120"}
	for _, tc := range []struct {
		name        string
		standbys    []string
		withPrimary bool
		rolling     bool
		lowered     []string
		want        []Step
		wantErr     string
	}{
		{"rolling, raising", []string{"pg2", "pg3"}, true, true, nil, []Step{sb("pg2"), sb("pg3"), sw}, ""},
		{"rolling, lowering", []string{"pg2", "pg3"}, true, true, low, []Step{inPlace, sb("pg2"), sb("pg3")}, ""},
		{"standbys only, raising", []string{"pg2"}, false, true, nil, []Step{sb("pg2")}, ""},
		{"the primary alone, raising", nil, true, false, nil, []Step{inPlace}, ""},
		{"the primary alone, lowering", nil, true, false, low, []Step{inPlace}, ""},
		{"a standby alone while the primary lowers", []string{"pg2"}, false, false, low, nil, "restart the primary first"},
		{"--pending, standbys only pending, primary lowering", []string{"pg2", "pg3"}, false, true, low, nil, "restart the primary first"},
		{"nothing", nil, false, true, nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := orderRestart("pg1", tc.standbys, tc.withPrimary, tc.rolling, tc.lowered)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("steps %v, want %v", got, tc.want)
			}
		})
	}
}
