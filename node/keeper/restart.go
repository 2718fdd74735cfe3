package keeper

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// restartRequest asks Run's reconciler goroutine to restart Postgres.
type restartRequest struct{ reply chan error }

// restartStopTimeout bounds the fast shutdown of an operator's restart.
const restartStopTimeout = time.Minute

// RestartPostgres is an operator's `hasidecar restart` on this node: the
// reconciler stops Postgres with a fast shutdown, and its next round starts
// it again with the settings on disk (a pending_restart GUC takes effect).
// A standby comes back as a standby of the same primary. A primary
// restarts in place: the stop was asked for, so it is no crash, the lease
// keeper keeps renewing, and the start as primary arms the guard first, as
// every start does. It returns once Postgres is stopped (the caller
// watches it come back).
func (a *Keeper) RestartPostgres(ctx context.Context) error {
	r := restartRequest{reply: make(chan error, 1)}
	select {
	case a.restartCh <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// restartRefusal says why this node's Postgres may not be restarted now
// ("" when it may).
func restartRefusal(name string, st *pb.ClusterState, me *pb.Node, running, leaseValid bool, restartTimeout time.Duration) string {
	switch {
	case me == nil:
		return name + " is not registered in the cluster yet"
	case me.Maintenance:
		return name + " is in maintenance: its keeper would not start Postgres again; restart it yourself, or run `hasidecar node maintenance off` first"
	case !running:
		return "postgres is not running on " + name + ": its keeper starts it when it can"
	case st.Switchover != nil:
		return "a switchover is in flight: wait for it to finish"
	}
	if p := fsm.Primary(st); p != nil && p.Id == me.Id {
		if !leaseValid {
			return name + " is the primary but holds no valid lease: not restarting it now"
		}
		if restartTimeout == 0 {
			return name + " is the primary and postgres.restart_timeout is 0 (never restarted in place): restart the whole cluster (no --node), which switches over first"
		}
	}
	return ""
}

// isPrimary: the FSM names this node primary.
func (a *Keeper) isPrimary(st *pb.ClusterState) bool {
	p := fsm.Primary(st)
	return p != nil && p.Name == a.cfg.Name
}

func (a *Keeper) restartPostgres(ctx context.Context) error {
	st := a.log.State()
	if why := restartRefusal(a.cfg.Name, st, a.self(), a.pg.Running(), a.leaseValid(), a.cfg.Postgres.RestartTimeout.D()); why != "" {
		return errors.New(why)
	}
	a.logger.Info("restarting postgres: asked by an operator (fast shutdown, then the next round starts it)", "term", st.Term)
	a.markExpectedStop()
	sctx, cancel := context.WithTimeout(ctx, restartStopTimeout)
	defer cancel()
	if err := a.pg.Stop(sctx, pgctl.StopFast); err != nil {
		if a.pg.Running() {
			a.expectedStop.Store(false) // still running: its next exit is not ours
		}
		return fmt.Errorf("stop postgres for the restart: %w", err)
	}
	if a.isPrimary(st) {
		// Down from now, as after a crash: if it does not start again
		// within restart_timeout, the lease is released and the leader
		// fails over (renewOrRelease); a successful start clears it.
		a.crashMu.Lock()
		a.crashedAt = a.clk.Now()
		a.crashMu.Unlock()
	}
	a.conf = confMemo{} // render and compare the files again before the start
	a.pokeWatchdog()
	return nil
}

// reloadRequest asks Run's reconciler goroutine to reload Postgres.
type reloadRequest struct{ reply chan error }

// SetNodeConfig hands the keeper the node's configuration after a reload
// (SIGHUP): its postgres.parameters and postgres.hba are rendered from the
// next configure on. The other keys keep their values from New.
func (a *Keeper) SetNodeConfig(c *config.Config) {
	if c != nil && c.Postgres != nil {
		a.live.Store(c)
	}
}

// ReloadPostgres is an operator's `hasidecar reload` on this node: the
// reconciler renders and writes the managed files again (not skipped as
// unchanged), then reloads Postgres whatever changed (the postmaster
// re-reads its files asynchronously, as after pg_reload_conf).
func (a *Keeper) ReloadPostgres(ctx context.Context) error {
	r := reloadRequest{reply: make(chan error, 1)}
	select {
	case a.reloadCh <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Keeper) reloadPostgres(ctx context.Context) error {
	a.conf = confMemo{} // write the files from the current inputs
	a.Reconcile(ctx)
	if !a.pg.Running() {
		return errors.New("postgres is not running on " + a.cfg.Name + ": its keeper writes the files and starts it when it can")
	}
	if err := a.pg.Reload(ctx); err != nil {
		return err
	}
	a.logger.Info("postgres reloaded: asked by an operator")
	return nil
}
