package node

import (
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestNodeStatus(t *testing.T) {
	data := pb.NodeKind_NODE_KIND_DATA
	primary := &pb.Node{Kind: data, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Active: true, RoleTerm: 3}
	standby := &pb.Node{Kind: data, Role: pb.NodeRole_NODE_ROLE_STANDBY, Active: true}
	inactive := &pb.Node{Kind: data, Role: pb.NodeRole_NODE_ROLE_STANDBY}
	former := &pb.Node{Kind: data, Role: pb.NodeRole_NODE_ROLE_STANDBY, RoleTerm: 4}
	rejoined := &pb.Node{Kind: data, Role: pb.NodeRole_NODE_ROLE_STANDBY, Active: true, RoleTerm: 4}
	witness := &pb.Node{Kind: pb.NodeKind_NODE_KIND_WITNESS, Role: pb.NodeRole_NODE_ROLE_WITNESS, Active: true}
	report := func(running, recovery bool) *pb.NodeReport {
		return &pb.NodeReport{Postgres: &pb.PostgresStatus{Running: running, InRecovery: recovery}}
	}
	cases := []struct {
		name  string
		row   *pb.Node
		r     *pb.NodeReport
		fresh bool
		age   time.Duration
		want  string
	}{
		{"primary", primary, report(true, false), true, 0, "running"},
		{"standby", standby, report(true, true), true, 0, "running"},
		{"witness", witness, &pb.NodeReport{}, true, 0, "running"},
		{"just promoted, still in recovery", primary, report(true, true), true, 0, "promoting"},
		{"a standby out of recovery", standby, report(true, false), true, 0, "! running as primary"},
		{"standby stopped", standby, report(false, false), true, 0, "stopped"},
		{"inactive, stopped", inactive, report(false, false), true, 0, "failed"},
		{"former primary, sidecar answers, postgres down", former, report(false, false), true, 0, "rejoining (former primary, term 4)"},
		{"former primary, restarted as standby", former, report(true, true), true, 0, "rejoining (former primary, term 4)"},
		{"former primary still writable", former, report(true, false), true, 0, "! running as primary"},
		{"former primary, silent", former, report(true, false), false, 900 * time.Millisecond, "failed (former primary, term 4)"},
		{"rejoined former primary", rejoined, report(true, true), true, 0, "running"},
		// The last report says running; the node did not answer just now.
		{"primary, silent", primary, report(true, false), false, 1200 * time.Millisecond, "unreachable (last report 1.2s ago)"},
		{"standby, never reported", standby, nil, false, -1, "unreachable (no report yet)"},
		{"inactive, silent", inactive, nil, false, 5 * time.Second, "failed"},
	}
	for _, tc := range cases {
		if got := nodeStatus(tc.row, tc.r, tc.fresh, tc.age); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
