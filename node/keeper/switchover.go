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

// switchoverStop: checkpoint while still accepting writes (so the shutdown
// checkpoint is short), then a clean fast stop.
func (a *Keeper) switchoverStop(ctx context.Context, term uint64) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := a.pg.Checkpoint(cctx); err != nil {
		a.logger.Warn("checkpoint before the switchover stop", "error", err)
	}
	cancel()
	a.logger.Info("switchover: stopping postgres cleanly", "term", term)
	a.markExpectedStop()
	if err := a.pg.Stop(ctx, pgctl.StopFast); err != nil {
		return fmt.Errorf("stop for the switchover: %w", err)
	}
	return nil
}

// reportShutdown commits the shutdown checkpoint LSN for the leader.
func (a *Keeper) reportShutdown(ctx context.Context, term uint64) error {
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return err
	}
	if !cd.CleanlyShutDown() {
		return fmt.Errorf("postgres did not shut down cleanly (state %q): the switchover cannot go on", cd.State)
	}
	if err := a.pg.SetSwitchoverMarker(term, cd.CheckpointLSN); err != nil {
		return err
	}
	_, err = a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: term, ShutdownLsn: cd.CheckpointLSN}}}, 0)
	if err != nil {
		return fmt.Errorf("report the shutdown checkpoint: %w", err)
	}
	a.logger.Info("switchover: stopped cleanly", "shutdown_checkpoint", pgctl.FormatLSN(cd.CheckpointLSN), "term", term)
	return nil
}
