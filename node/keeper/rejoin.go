package keeper

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

// Refused is a request the keeper turns down for a reason the caller can
// act on (the gRPC layer answers it as FailedPrecondition).
type Refused struct{ Msg string }

func (e *Refused) Error() string { return e.Msg }

func refuse(format string, args ...any) error { return &Refused{Msg: fmt.Sprintf(format, args...)} }

// RequestRejoin hands a rejoin request to Run's reconciler goroutine, so
// that it never runs beside another action, and waits for its answer.
func (a *Keeper) RequestRejoin(ctx context.Context, req *pb.RejoinRequest) ([]string, error) {
	r := rejoinRequest{req: req, reply: make(chan rejoinReply, 1)}
	select {
	case a.rejoinCh <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-r.reply:
		return rep.steps, rep.err
	case <-ctx.Done():
		return nil, fmt.Errorf("rejoin still running: %w (see `hasidecar node status`)", ctx.Err())
	}
}

// Rejoin (`hasidecar node rejoin`) rejoins this node (a stopped former
// primary or a diverged standby) to the current primary: pg_rewind first; a
// fresh clone only when rewind cannot work and allow_reclone is set. A step
// of its own: it must not run beside Reconcile (Run: RequestRejoin).
func (a *Keeper) Rejoin(ctx context.Context, req *pb.RejoinRequest) ([]string, error) {
	a.conf = confMemo{} // the rewind or clone rewrites the managed files
	st := a.log.State()
	p := fsm.Primary(st)
	me := a.self()
	if p == nil || me == nil || p.Id == me.Id {
		return nil, refuse("nothing to rejoin: the primary changed meanwhile")
	}
	var steps []string
	if a.pg.Running() {
		a.markExpectedStop()
		if err := a.pg.Stop(ctx, pgctl.StopFast); err != nil {
			return steps, fmt.Errorf("stop postgres: %w", err)
		}
		steps = append(steps, "stopped Postgres")
	}
	act := action{Kind: actRewind, Term: st.Term, Upstream: p}
	a.setState(fmt.Sprintf("rejoin: rewinding from %q", p.Name))
	err := a.pg.Rewind(ctx, a.upstreamConninfo(p, true), a.passfile)
	switch {
	case err == nil:
		steps = append(steps, fmt.Sprintf("pg_rewind from %s: done", p.Name))
	case errors.Is(err, pgctl.ErrSameTimeline) && !req.AllowReclone:
		// Nothing diverged: it follows as it is (Postgres refuses to
		// stream if it were ahead, and the reconciler would say so).
		steps = append(steps, fmt.Sprintf("pg_rewind: already on %s's timeline, no rewind needed", p.Name))
		if _, err := a.pg.SetStandbySignal(true); err != nil {
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
		return steps, refuse("pg_rewind cannot rejoin %s to %s: %v; run `hasidecar node rejoin --allow-reclone` to set the data directory aside and clone afresh", a.cfg.Name, p.Name, err)
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
	a.recordEvent(ctx, fsm.EventNodeRejoin, true, st.Term, fmt.Sprintf("%q rejoined %q by hand (node rejoin)", a.cfg.Name, p.Name))
	return steps, nil
}
