package node

import (
	"context"
	"fmt"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// ReasonReinit is the re-clone mark's reason when an operator asked for it.
const ReasonReinit = "an operator asked for it (hasidecar reinit)"

// Reinit is `hasidecar reinit --node NAME` (Patroni's `reinit`, repmgr's
// `standby clone --force`): it marks a standby needs_reclone, and that
// node's keeper stops its Postgres, sets the data directory aside (kept,
// never deleted: state_dir's aside directory) and clones afresh from the
// primary; the mark is cleared once it streams again. Only a standby, only
// while a primary runs to clone from. It runs on the leader (not_leader
// elsewhere), so the leader checks the operator's own certificate.
func (s *clusterService) Reinit(ctx context.Context, req *pb.ReinitRequest) (*pb.ReinitResponse, error) {
	if err := s.n.requireLeader(ctx); err != nil {
		return nil, err
	}
	return s.n.reinit(ctx, req)
}

func (n *Node) reinit(ctx context.Context, req *pb.ReinitRequest) (*pb.ReinitResponse, error) {
	st := n.fsm.State()
	resp := &pb.ReinitResponse{Term: st.Term}
	target := fsm.NodeByName(st, req.Name)
	if req.Name == "" {
		return nil, invalid("say which standby to clone afresh: --node NAME")
	}
	if target == nil {
		return nil, notFound("no node named %q", req.Name)
	}
	if target.Kind != pb.NodeKind_NODE_KIND_DATA {
		return nil, refuse("%q is a witness: it has no Postgres to clone", target.Name)
	}
	primary := fsm.Primary(st)
	if primary == nil {
		return nil, refuse("the cluster has no primary to clone %q from", target.Name)
	}
	if primary.Id == target.Id {
		return nil, refuse("%q is the primary: only a standby can be cloned afresh (switch over first: `hasidecar switchover --to OTHER`)", target.Name)
	}
	if st.Switchover != nil {
		return nil, refuse("a switchover is in flight: wait for it to finish")
	}
	resp.Primary = primary.Name
	if target.NeedsReclone {
		resp.Checks = append(resp.Checks, fmt.Sprintf("%q is already marked for a re-clone (%s)", target.Name, target.NeedsRecloneReason))
		return resp, nil
	}
	resp.Checks = append(resp.Checks,
		fmt.Sprintf("ok: %q is a standby and %q the primary in term %d", target.Name, primary.Name, st.Term),
		fmt.Sprintf("%q's keeper will stop its Postgres, set its data directory aside (kept) and clone afresh from %q", target.Name, primary.Name))
	if req.DryRun {
		resp.Checks = append(resp.Checks, "dry run: nothing changed")
		return resp, nil
	}
	_, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetNeedsReclone{SetNeedsReclone: &pb.SetNeedsReclone{
		Term: st.Term, PrimaryId: primary.Id, NodeId: target.Id, NeedsReclone: true, Reason: ReasonReinit}}})
	if err != nil {
		return nil, fmt.Errorf("mark %s for a re-clone: %w", target.Name, err)
	}
	n.logger.Info("re-clone asked by an operator", "node", target.Name, "primary", primary.Name, "term", st.Term)
	return resp, nil
}

// SetMaintenance is `hasidecar node maintenance on|off --node NAME`: a
// standby in maintenance is left alone by its keeper (no start, stop,
// rewind, re-point or clone; a writable one is still fenced) and is never
// a failover candidate. The primary is refused by the FSM (switch over
// first, or pause the cluster). Leader only, like every operator verb.
func (s *clusterService) SetMaintenance(ctx context.Context, req *pb.SetMaintenanceRequest) (*pb.SetMaintenanceResponse, error) {
	n := s.n
	if err := n.requireLeader(ctx); err != nil {
		return nil, err
	}
	st := n.fsm.State()
	target := fsm.NodeByName(st, req.Name)
	if req.Name == "" {
		return nil, invalid("say which node: --node NAME")
	}
	if target == nil {
		return nil, notFound("no node named %q", req.Name)
	}
	if target.Maintenance == req.On {
		return &pb.SetMaintenanceResponse{}, nil
	}
	if _, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetMaintenance{SetMaintenance: &pb.SetMaintenance{
		Term: st.Term, NodeId: target.Id, On: req.On, Reason: req.Reason}}}); err != nil {
		return nil, fmt.Errorf("maintenance of %s: %w", target.Name, err)
	}
	n.logger.Info("maintenance", "node", target.Name, "on", req.On, "reason", req.Reason)
	return &pb.SetMaintenanceResponse{Changed: true}, nil
}
