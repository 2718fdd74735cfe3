package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// rejoinRequest is `hasidecar node rejoin`, handed to the reconciler's
// goroutine so that it never runs beside another action.
type rejoinRequest struct {
	req   *pb.RejoinRequest
	reply chan rejoinReply
}

type rejoinReply struct {
	steps []string
	err   error
}

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
	o := a.observed()
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
	r := rejoinRequest{req: req, reply: make(chan rejoinReply, 1)}
	select {
	case a.rejoinCh <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-r.reply:
		if rep.err != nil {
			return nil, rep.err
		}
		return &pb.RejoinResponse{Steps: rep.steps}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("rejoin still running: %w (see `hasidecar node status`)", ctx.Err())
	}
}

// rejoin runs on the reconciler's goroutine.
func (a *pgAgent) rejoin(ctx context.Context, req *pb.RejoinRequest) ([]string, error) {
	st := a.n.fsm.State()
	p := fsm.Primary(st)
	me := a.n.self()
	if p == nil || me == nil || p.Id == me.Id {
		return nil, refuse("nothing to rejoin: the primary changed meanwhile")
	}
	var steps []string
	if a.ctl.Running() {
		a.markExpectedStop()
		if err := a.ctl.Stop(ctx, pgctl.StopFast); err != nil {
			return steps, fmt.Errorf("stop postgres: %w", err)
		}
		steps = append(steps, "stopped Postgres")
	}
	act := action{Kind: actRewind, Term: st.Term, Upstream: p}
	a.setState(fmt.Sprintf("rejoin: rewinding from %q", p.Name))
	err := a.ctl.Rewind(ctx, a.upstreamConninfo(p, true), a.passfile)
	switch {
	case err == nil:
		steps = append(steps, fmt.Sprintf("pg_rewind from %s: done", p.Name))
	case errors.Is(err, pgctl.ErrSameTimeline) && !req.AllowReclone:
		// Nothing diverged: it follows as it is (Postgres refuses to
		// stream if it were ahead, and the reconciler would say so).
		steps = append(steps, fmt.Sprintf("pg_rewind: already on %s's timeline, no rewind needed", p.Name))
		if _, err := a.ctl.SetStandbySignal(true); err != nil {
			return steps, err
		}
	case errors.Is(err, pgctl.ErrRewindImpossible) && req.AllowReclone:
		steps = append(steps, fmt.Sprintf("pg_rewind from %s cannot work (%v)", p.Name, err))
		if err := a.setDataDirAside(ctx, st.Term, "node rejoin --allow-reclone: pg_rewind from "+p.Name+" cannot work"); err != nil {
			return steps, fmt.Errorf("set the data directory aside: %w", err)
		}
		steps = append(steps, "data directory set aside (renamed, not deleted)")
		if err := a.clone(ctx, action{Kind: actClone, Term: st.Term, Upstream: p}); err != nil {
			return steps, err
		}
		steps = append(steps, fmt.Sprintf("cloned from %s", p.Name))
	case errors.Is(err, pgctl.ErrRewindImpossible):
		return steps, refuse("pg_rewind cannot rejoin %s to %s: %v; run `hasidecar node rejoin --allow-reclone` to set the data directory aside and clone afresh", a.n.cfg.Name, p.Name, err)
	default:
		return steps, fmt.Errorf("pg_rewind from %s: %w", p.Name, err)
	}
	act.Kind, act.AsStandby = actConfigure, true
	if err := a.configure(ctx, act); err != nil {
		return steps, err
	}
	act.Kind = actStart
	if err := a.start(ctx, act); err != nil {
		return steps, err
	}
	steps = append(steps, fmt.Sprintf("started as a standby of %s", p.Name))
	a.recordEvent(ctx, fsm.EventNodeRejoin, true, st.Term, fmt.Sprintf("%q rejoined %q by hand (node rejoin)", a.n.cfg.Name, p.Name))
	return steps, nil
}
