package keeper

import (
	"context"
	"fmt"
	"time"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Planned switchover (DESIGN.md "Planned switchover"):
//
//  1. The leader checks the target and commits BeginSwitchover{from, to,
//     term, deadline}.
//  2. The old primary's sidecar checkpoints, stops Postgres cleanly (a fast
//     shutdown: every acknowledged write is in the WAL the walsenders send
//     before they exit) and commits its shutdown checkpoint LSN.
//  3. The leader waits until the target has received WAL past that LSN and
//     commits Promote{to, term+1, switchover}; the target promotes.
//  4. The old primary starts as a standby of the target without pg_rewind
//     (it stopped cleanly at a point the target has), the others follow.
//  5. If the target has not been promoted by the deadline, the leader gives
//     the old primary its role back in a new term (switchover_rollback):
//     the cluster is never left without a primary.

// skipRewind: the FSM made this node a standby in the term right after the
// switchover it stopped for, and its data directory still ends at the
// shutdown checkpoint it reported.
func (a *Keeper) skipRewind(ctx context.Context, st *pb.ClusterState) bool {
	term, lsn, ok := a.pg.SwitchoverMarker()
	if !ok || term+1 != st.Term {
		return false
	}
	cd, err := a.pg.ControlData(ctx)
	if err != nil || !cd.CleanlyShutDown() {
		return false
	}
	return cd.CheckpointLSN == lsn
}

// shutdownPoll: how often switchoverStop reads pg_control while Postgres
// shuts down.
const shutdownPoll = 5 * time.Millisecond

// switchoverStop: checkpoint while still accepting writes (so the shutdown
// checkpoint is short), then a clean fast stop. The shutdown checkpoint is
// reported as soon as pg_control holds it, not when the postmaster has
// exited: after it no process of this Postgres writes WAL (every backend
// is gone before it is written, new connections are refused) and its
// walsenders send what is left while the postmaster waits for them and
// for the standbys' flush confirmations, about a tenth of a second the
// write gap no longer waits for. The leader still promotes only a target
// that has received WAL past this checkpoint. When the early read fails
// (another pg_control layout, a torn read), the next round reports it from
// pg_controldata after the exit, as before. Once the checkpoint is
// there, the watchdog no longer fences this postmaster when the lease
// moves to the target (shutDownExiting): it cannot write, and a fence
// would record a `fence` event and could cut the last WAL sends short.
func (a *Keeper) switchoverStop(ctx context.Context, term uint64) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := a.pg.Checkpoint(cctx); err != nil {
		a.logger.Warn("checkpoint before the switchover stop", "error", err)
	}
	cancel()
	a.logger.Info("switchover: stopping postgres cleanly", "term", term)
	a.markExpectedStop()
	stopped := make(chan error, 1)
	go func() { stopped <- a.pg.Stop(ctx, pgctl.StopFast) }()
	wrap := func(err error) error {
		if err != nil {
			return fmt.Errorf("stop for the switchover: %w", err)
		}
		return nil
	}
	for {
		select {
		case err := <-stopped:
			return wrap(err)
		case <-a.clk.After(shutdownPoll):
		}
		cf, err := a.pg.ReadControlFile()
		if err != nil || cf.State != pgctl.StateShutDown {
			continue
		}
		a.shutDownExiting.Store(true)
		defer a.shutDownExiting.Store(false)
		if err := a.proposeShutdown(ctx, term, cf.CheckpointLSN, "while postgres exits"); err != nil {
			a.logger.Warn("report the shutdown checkpoint before the exit", "error", err)
		}
		return wrap(<-stopped)
	}
}

// reportShutdown commits the shutdown checkpoint LSN for the leader, from
// pg_controldata once Postgres has stopped (when switchoverStop could not).
func (a *Keeper) reportShutdown(ctx context.Context, term uint64) error {
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return err
	}
	if !cd.CleanlyShutDown() {
		return fmt.Errorf("postgres did not shut down cleanly (state %q): the switchover cannot go on", cd.State)
	}
	return a.proposeShutdown(ctx, term, cd.CheckpointLSN, "stopped")
}

// proposeShutdown notes the switchover marker, then commits the shutdown
// checkpoint LSN.
func (a *Keeper) proposeShutdown(ctx context.Context, term, lsn uint64, when string) error {
	if err := a.pg.SetSwitchoverMarker(term, lsn); err != nil {
		return err
	}
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: term, ShutdownLsn: lsn}}}, 0)
	if err != nil {
		return fmt.Errorf("report the shutdown checkpoint: %w", err)
	}
	a.logger.Info("switchover: shutdown checkpoint reported", "shutdown_checkpoint", pgctl.FormatLSN(lsn), "term", term, "when", when)
	return nil
}
