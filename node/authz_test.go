package node

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/hasidecar/hasidecar/internal/pki"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Every method of every service is in methodAccess (a missing one would be
// refused to everyone), and the mutating verbs need an operator.
func TestMethodAccessTable(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{pb.ClusterService_ServiceDesc, pb.NodeService_ServiceDesc, pb.ConfigService_ServiceDesc, pb.PeerService_ServiceDesc} {
		for _, m := range sd.Methods {
			full := "/" + sd.ServiceName + "/" + m.MethodName
			if _, ok := methodAccess[full]; !ok {
				t.Errorf("%s is not in methodAccess", full)
			}
		}
		for _, m := range sd.Streams {
			full := "/" + sd.ServiceName + "/" + m.StreamName
			if _, ok := methodAccess[full]; !ok {
				t.Errorf("%s is not in methodAccess", full)
			}
		}
	}
	cases := []struct {
		method                 string
		node, operator, monitr bool
	}{
		{pb.NodeService_ReloadConfig_FullMethodName, false, true, false},
		{pb.NodeService_RestartPostgres_FullMethodName, false, true, false},
		{pb.NodeService_PendingSettings_FullMethodName, true, true, true},
		{pb.NodeService_Status_FullMethodName, true, true, true},
		{pb.ConfigService_Set_FullMethodName, false, true, false},
		{pb.PeerService_Apply_FullMethodName, true, false, false},
		// scheduled operations: an operator's; ScheduledRestart takes only a
		// node's certificate (the leader's; the handler checks which)
		{pb.ClusterService_Schedule_FullMethodName, false, true, false},
		{pb.ClusterService_CancelScheduled_FullMethodName, false, true, false},
		{pb.PeerService_ScheduledRestart_FullMethodName, true, false, false},
	}
	for _, c := range cases {
		a := methodAccess[c.method]
		for role, want := range map[pki.Role]bool{pki.RoleNode: c.node, pki.RoleOperator: c.operator, pki.RoleMonitor: c.monitr} {
			if got := a.allows(role); got != want {
				t.Errorf("%s: role %v allowed %v, want %v", c.method, role, got, want)
			}
		}
	}
}
