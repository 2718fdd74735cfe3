package node

import (
	"context"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// RestartPostgres is `hasidecar restart` on this node (the CLI calls each
// node itself, operator certificate): its keeper stops Postgres with a fast
// shutdown and starts it again with the settings on disk (node/keeper
// restart.go). It answers once Postgres is stopped.
func (s *nodeService) RestartPostgres(ctx context.Context, _ *pb.RestartPostgresRequest) (*pb.RestartPostgresResponse, error) {
	return s.n.restartPostgres(ctx)
}

// restartPostgres is a restart of this node's Postgres, asked by an
// operator (RestartPostgres) or by the leader running a scheduled restart
// (PeerService.ScheduledRestart).
func (n *Node) restartPostgres(ctx context.Context) (*pb.RestartPostgresResponse, error) {
	if n.pg == nil {
		return nil, refuse("%s is a witness: it has no Postgres to restart", n.cfg.Name)
	}
	resp := &pb.RestartPostgresResponse{Role: pb.NodeRole_NODE_ROLE_STANDBY, PostmasterStartUnixMs: n.pg.Observed().GetPostmasterStartUnixMs()}
	if p := fsm.Primary(n.fsm.State()); p != nil && p.Name == n.cfg.Name {
		resp.Role = pb.NodeRole_NODE_ROLE_PRIMARY
	}
	if err := n.pg.RestartPostgres(ctx); err != nil {
		return nil, refuse("restart postgres on %s: %v", n.cfg.Name, err)
	}
	n.logger.Info("postgres restart asked", "role", resp.Role.String())
	return resp, nil
}
