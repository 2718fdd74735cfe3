package keeper

import (
	"fmt"
	"time"
)

// guardMargin: the guard kills Postgres this long before the lease
// deadline, so that it has stopped accepting writes by then.
const guardMargin = 100 * time.Millisecond

// guardTick keeps a guard process beside the running postmaster (the
// independent watchdog and lease gate: it kills Postgres when the deadline
// passes, i.e. when this sidecar is frozen and cannot fence) and tells it
// the latest deadline ever granted; a standby's guard is disarmed. Called
// by WatchdogTick. While a start as primary is in flight the guard armed
// before it (start) is kept.
func (a *Keeper) guardTick() {
	a.guardMu.Lock()
	defer a.guardMu.Unlock()
	if !a.pg.Running() && !a.startingPrimary.Load() {
		a.pg.StopGuard()
		return
	}
	if err := a.armGuard(); err != nil {
		a.logger.Warn("postgres guard", "error", err)
	}
}

// armGuard makes sure a guard runs (beside the postmaster, or waiting for
// the one about to start) and tells it the deadline: the lease's, less
// guardMargin, unless Postgres runs (or starts) as a standby. The start
// as primary and the promotion call it first, so that Postgres never
// accepts writes before its guard is armed.
func (a *Keeper) armGuard() error {
	if err := a.pg.StartGuard(); err != nil {
		return fmt.Errorf("start the postgres guard: %w", err)
	}
	var deadline, last time.Time // zero: disarm
	var term uint64
	if !a.standbyMode.Load() {
		a.lease.mu.Lock()
		last, term = a.lease.last, a.lease.term
		a.lease.mu.Unlock()
		if last.IsZero() {
			last = a.clk.Now() // never granted: a deadline already past
		}
		deadline = last.Add(-guardMargin)
	}
	if err := a.pg.UpdateGuardDeadline(deadline, term); err != nil {
		return fmt.Errorf("tell the postgres guard its deadline: %w", err)
	}
	return nil
}
