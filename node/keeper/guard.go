package keeper

import "time"

// guardMargin: the guard kills Postgres this long before the lease
// deadline, so that it has stopped accepting writes by then.
const guardMargin = 100 * time.Millisecond

// guardTick keeps a guard process beside the running postmaster (the
// independent watchdog and lease gate: it kills Postgres when the deadline
// passes, i.e. when this sidecar is frozen and cannot fence) and tells it
// the latest deadline ever granted; a standby's guard is disarmed. Called
// by WatchdogTick.
func (a *Keeper) guardTick() {
	if !a.pg.Running() {
		a.pg.StopGuard()
		return
	}
	if err := a.pg.StartGuard(); err != nil {
		a.logger.Error("start the postgres guard", "error", err)
		return
	}
	var deadline time.Time // zero: disarm
	if !a.standbyMode.Load() {
		a.lease.mu.Lock()
		last := a.lease.last
		a.lease.mu.Unlock()
		if last.IsZero() {
			last = a.clk.Now() // never granted: a deadline already past
		}
		deadline = last.Add(-guardMargin)
	}
	if err := a.pg.UpdateGuardDeadline(deadline); err != nil {
		a.logger.Warn("tell the postgres guard", "error", err)
	}
}
