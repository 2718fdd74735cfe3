package node

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/hasidecar/hasidecar/internal/pki"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestMethodAccessComplete: every method of every service has a row in
// methodAccess (a missing one is refused to everybody), and the scheduled
// operations need an operator, while ScheduledRestart takes only a node's
// certificate (the leader's; the handler checks which).
func TestMethodAccessComplete(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{pb.ClusterService_ServiceDesc, pb.NodeService_ServiceDesc, pb.ConfigService_ServiceDesc, pb.PeerService_ServiceDesc} {
		for _, m := range sd.Methods {
			if _, ok := methodAccess["/"+sd.ServiceName+"/"+m.MethodName]; !ok {
				t.Errorf("%s/%s has no row in methodAccess", sd.ServiceName, m.MethodName)
			}
		}
		for _, m := range sd.Streams {
			if _, ok := methodAccess["/"+sd.ServiceName+"/"+m.StreamName]; !ok {
				t.Errorf("%s/%s (stream) has no row in methodAccess", sd.ServiceName, m.StreamName)
			}
		}
	}
	for _, tc := range []struct {
		method string
		role   pki.Role
		want   bool
	}{
		{pb.ClusterService_Schedule_FullMethodName, pki.RoleOperator, true},
		{pb.ClusterService_Schedule_FullMethodName, pki.RoleMonitor, false},
		{pb.ClusterService_Schedule_FullMethodName, pki.RoleNode, false},
		{pb.ClusterService_CancelScheduled_FullMethodName, pki.RoleOperator, true},
		{pb.ClusterService_CancelScheduled_FullMethodName, pki.RoleMonitor, false},
		{pb.ClusterService_CancelScheduled_FullMethodName, pki.RoleNode, false},
		{pb.PeerService_ScheduledRestart_FullMethodName, pki.RoleNode, true},
		{pb.PeerService_ScheduledRestart_FullMethodName, pki.RoleOperator, false},
		{pb.PeerService_ScheduledRestart_FullMethodName, pki.RoleMonitor, false},
	} {
		if got := methodAccess[tc.method].allows(tc.role); got != tc.want {
			t.Errorf("%s by %s: allowed %t, want %t", tc.method, tc.role, got, tc.want)
		}
	}
}
