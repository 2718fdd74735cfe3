package node

import (
	"context"
	"fmt"
	"path"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/internal/pki"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// access is what a gRPC method needs of its caller.
type access int

const (
	// accessPeer: sidecars only (node certificates).
	accessPeer access = iota + 1
	// accessRead: anyone with a certificate of this cluster.
	accessRead
	// accessOperate: operators only.
	accessOperate
)

// methodAccess is the one table of who may call what. A method missing
// from it is refused (a new RPC must be added here to be callable).
var methodAccess = map[string]access{
	pb.ClusterService_Show_FullMethodName:            accessRead,
	pb.ClusterService_Events_FullMethodName:          accessRead,
	pb.ClusterService_Matrix_FullMethodName:          accessRead,
	pb.ClusterService_SetPaused_FullMethodName:       accessOperate,
	pb.ClusterService_Failover_FullMethodName:        accessOperate,
	pb.ClusterService_Switchover_FullMethodName:      accessOperate,
	pb.ClusterService_Reinit_FullMethodName:          accessOperate,
	pb.ClusterService_SetMaintenance_FullMethodName:  accessOperate,
	pb.ClusterService_RemoveNode_FullMethodName:      accessOperate,
	pb.ClusterService_Schedule_FullMethodName:        accessOperate,
	pb.ClusterService_CancelScheduled_FullMethodName: accessOperate,

	pb.NodeService_Status_FullMethodName:          accessRead,
	pb.NodeService_Rejoin_FullMethodName:          accessOperate,
	pb.NodeService_History_FullMethodName:         accessRead,
	pb.NodeService_Cleanup_FullMethodName:         accessOperate,
	pb.NodeService_Leave_FullMethodName:           accessOperate,
	pb.NodeService_RestartPostgres_FullMethodName: accessOperate,
	pb.NodeService_ReloadConfig_FullMethodName:    accessOperate,
	pb.NodeService_PendingSettings_FullMethodName: accessRead,

	pb.ConfigService_Show_FullMethodName:    accessRead,
	pb.ConfigService_History_FullMethodName: accessRead,
	pb.ConfigService_Set_FullMethodName:     accessOperate,

	pb.PeerService_CheckParameters_FullMethodName: accessPeer,
	pb.PeerService_EnsureSlot_FullMethodName:      accessPeer,
	pb.PeerService_Join_FullMethodName:            accessPeer,
	pb.PeerService_Apply_FullMethodName:           accessPeer,
	pb.PeerService_Report_FullMethodName:          accessPeer,
	pb.PeerService_Sample_FullMethodName:          accessPeer,
	pb.PeerService_LSN_FullMethodName:             accessPeer,
	pb.PeerService_Ping_FullMethodName:            accessPeer,
	// Only from the Raft leader, for the scheduled restart that runs.
	pb.PeerService_ScheduledRestart_FullMethodName: accessPeer,
	// Remove is the operator's verb; followers no longer forward it.
	pb.PeerService_Remove_FullMethodName: accessOperate,
}

func (a access) allows(r pki.Role) bool {
	switch a {
	case accessPeer:
		return r == pki.RoleNode
	case accessRead:
		return r == pki.RoleNode || r == pki.RoleOperator || r == pki.RoleMonitor
	case accessOperate:
		return r == pki.RoleOperator
	}
	return false
}

type callerKey struct{}

// caller is the verified identity of the client of this call; ok is false
// when TLS is off (loopback only: there is no identity to check).
func caller(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(callerKey{}).(pki.Identity)
	return id, ok
}

// authorize checks the caller's certificate against methodAccess and puts
// its identity into the context. Every refusal is logged.
func (n *Node) authorize(ctx context.Context, method string) (context.Context, error) {
	if n.tls == nil {
		return ctx, nil
	}
	short := path.Base(method)
	id, err := peerIdentity(ctx)
	if err != nil {
		n.logger.Warn("denied: a caller without a usable certificate", "method", short, "error", err)
		return nil, status.Errorf(codes.Unauthenticated, "denied: %v", err)
	}
	if id.Cluster != n.cfg.Cluster {
		msg := fmt.Sprintf("denied: %s belongs to cluster %q, not %q", id, id.Cluster, n.cfg.Cluster)
		n.logger.Warn(msg, "method", short)
		return nil, status.Error(codes.PermissionDenied, msg)
	}
	if a := methodAccess[method]; !a.allows(id.Role) {
		msg := fmt.Sprintf("denied: %s may not call %s", id, short)
		if a == accessOperate {
			msg += ": it needs an operator certificate"
		}
		n.logger.Warn(msg)
		return nil, status.Error(codes.PermissionDenied, msg)
	}
	return context.WithValue(ctx, callerKey{}, id), nil
}

func peerIdentity(ctx context.Context) (pki.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, fmt.Errorf("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, fmt.Errorf("the connection is not TLS")
	}
	return pki.FromConnState(info.State)
}

func (n *Node) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := n.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	resp, err := h(ctx, req)
	return resp, toStatus(err)
}

func (n *Node) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if _, err := n.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// samePeer refuses a PeerService call that speaks for another node than
// the caller's certificate names.
func samePeer(ctx context.Context, what, name string) error {
	id, ok := caller(ctx)
	if !ok || id.Name == name {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "denied: %s may not %s as %q: a node speaks only for itself", id, what, name)
}

// notLeaderPrefix starts the answer of a follower to a call only the Raft
// leader takes from its caller (operator verbs, joins): the caller asks the
// leader itself, so that the leader sees the caller's own certificate.
const notLeaderPrefix = "not_leader: "

// noLeaderPrefix starts the answer of a follower that knows no Raft leader
// right now (an election under way, or no quorum). It answers before doing
// anything, so the caller may ask again (NoLeaderYet).
const noLeaderPrefix = "no_leader: "

// notLeader is that answer, naming the leader's gRPC address, or the
// no_leader answer when there is none.
func (n *Node) notLeader() error {
	addr, name, err := n.leaderGRPC()
	if err != nil {
		return status.Errorf(codes.Unavailable, "%s%v", noLeaderPrefix, err)
	}
	return status.Errorf(codes.Unavailable, "%s%s %s leads the cluster; ask it", notLeaderPrefix, addr, name)
}

// NoLeaderYet reports a follower's answer that it knows no Raft leader
// right now; nothing was done, and the same call may succeed once an
// election ends. It answers the reason, without the prefix.
func NoLeaderYet(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), noLeaderPrefix) {
		return "", false
	}
	return strings.TrimPrefix(st.Message(), noLeaderPrefix), true
}

// LeaderRedirect reads the leader's gRPC address from a not_leader answer.
func LeaderRedirect(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), notLeaderPrefix) {
		return "", false
	}
	f := strings.Fields(strings.TrimPrefix(st.Message(), notLeaderPrefix))
	if len(f) == 0 {
		return "", false
	}
	return f[0], true
}
