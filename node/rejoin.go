package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/node/keeper"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Rejoin rejoins this node (a stopped former primary or a diverged standby)
// to the current primary: pg_rewind first; a fresh clone only when rewind
// cannot work and allow_reclone is set.
func (s *nodeService) Rejoin(ctx context.Context, req *pb.RejoinRequest) (*pb.RejoinResponse, error) {
	a := s.n.pg
	if a == nil {
		return nil, refuse("%s is a witness: it has no Postgres to rejoin", s.n.cfg.Name)
	}
	st := s.n.fsm.State()
	p := fsm.Primary(st)
	me := s.n.self()
	switch {
	case me == nil:
		return nil, refuse("%s is not registered in the cluster yet", s.n.cfg.Name)
	case p == nil:
		return nil, refuse("the cluster has no primary to rejoin")
	case p.Id == me.Id:
		return nil, refuse("%s is the primary: there is nothing to rejoin", s.n.cfg.Name)
	}
	o := a.Observed()
	if o.GetRunning() && o.InRecovery && o.WalReceiverStatus == "streaming" && !req.ForceRewind {
		return &pb.RejoinResponse{Steps: []string{fmt.Sprintf("%s already streams from %s: nothing to do (--force-rewind rewinds anyway)", s.n.cfg.Name, p.Name)}}, nil
	}
	if req.DryRun {
		steps := []string{}
		if o.GetRunning() {
			steps = append(steps, "would stop Postgres")
		}
		steps = append(steps, fmt.Sprintf("would run pg_rewind from %s", p.Name))
		if req.AllowReclone {
			steps = append(steps, fmt.Sprintf("if pg_rewind cannot work: would set the data directory aside and clone from %s", p.Name))
		} else {
			steps = append(steps, "if pg_rewind cannot work: would stop and say so (--allow-reclone clones afresh)")
		}
		steps = append(steps, fmt.Sprintf("would start as a standby of %s and record node_rejoin", p.Name), "dry run: nothing was changed")
		return &pb.RejoinResponse{Steps: steps}, nil
	}
	steps, err := a.RequestRejoin(ctx, req)
	if err != nil {
		var r *keeper.Refused
		if errors.As(err, &r) {
			return nil, refuse("%s", r.Msg)
		}
		return nil, err
	}
	return &pb.RejoinResponse{Steps: steps}, nil
}
