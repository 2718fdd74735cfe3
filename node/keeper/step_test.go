package keeper

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestStepDriven drives a primary's keeper the way the simulator does: in
// one goroutine, by its step methods, on a manual clock. It starts
// Postgres once it holds a lease, keeps renewing, and when the log stops
// committing (the primary is cut off) it fences before its deadline.
func TestStepDriven(t *testing.T) {
	ctx := context.Background()
	k, clk, lg, pg := primaryCluster(t)
	_ = pg.Stop(ctx, pgctl.StopFast) // not started yet
	pg.stops = nil
	k.RenewLease(ctx)
	for i := 0; i < 5 && k.Reconcile(ctx); i++ {
	}
	if !pg.Running() || k.StateText() != "running as primary" {
		t.Fatalf("after reconciling: running %v, state %q", pg.Running(), k.StateText())
	}
	if lg.State().SystemIdentifier != 42 {
		t.Fatalf("system identifier not recorded: %d", lg.State().SystemIdentifier)
	}
	k.WatchdogTick(ctx)
	if !k.Writable() || len(pg.stops) != 0 {
		t.Fatalf("a healthy primary: writable %v, stops %v", k.Writable(), pg.stops)
	}
	// Cut off: nothing commits any more. Step each at the time it asks
	// for, as Run would, the watchdog also after each renewal pass.
	lg.FailWith(func(*pb.Command) error { return errors.New("no quorum") })
	renewedAt := clk.Now()
	next := k.RenewLease(ctx)
	dog := k.WatchdogTick(ctx)
	fenceAt := renewedAt.Add(4*time.Second - fenceMargin(k.cfg))
	if want := minTime(fenceAt, renewedAt.Add(k.watchdogIdle())); !dog.Equal(want) {
		t.Fatalf("watchdog due at %v, want %v (the fence time or the heartbeat, the sooner)", dog.Sub(renewedAt), want.Sub(renewedAt))
	}
	wakes := 0
	for clk.Now().Sub(renewedAt) < 4*time.Second && pg.Running() {
		clk.Set(minTime(next, dog))
		k.healthyAt.Store(clk.Now().UnixNano()) // Postgres itself stays healthy
		if !clk.Now().Before(next) {
			next = k.RenewLease(ctx)
		}
		dog = k.WatchdogTick(ctx)
		wakes++
		k.Aside(ctx)
	}
	if pg.Running() {
		t.Fatal("still running at the lease deadline")
	}
	if !clk.Now().Equal(fenceAt) {
		t.Fatalf("fenced %v after the last renewal, want exactly lease - fenceMargin = %v", clk.Now().Sub(renewedAt), fenceAt.Sub(renewedAt))
	}
	// Failed renewals are retried every renewRetry; the watchdog wakes
	// with them here, never on a fast tick of its own.
	if max := int((4*time.Second-fenceMargin(k.cfg))/renewRetry) + 2; wakes > max {
		t.Fatalf("%d watchdog passes before the fence, want at most %d", wakes, max)
	}
	if len(pg.stops) == 0 || pg.stops[0] != pgctl.StopFast || k.Writable() {
		t.Fatalf("after the fence: stops %v, writable %v", pg.stops, k.Writable())
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// TestWatchdogFrozenThawed drives Run's watchdog loop on a manual clock:
// it sleeps on one timer (no fast tick), does not fence while the lease
// holds, and a process frozen past its fence time (the clock jumps while
// nothing ran) fences the moment it runs again, without any other wake.
func TestWatchdogFrozenThawed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	k, clk, _, pg := primaryCluster(t)
	k.RenewLease(ctx)
	fenceAt := t0.Add(4*time.Second - fenceMargin(k.cfg))
	done := make(chan struct{})
	go func() { defer close(done); k.watchdog(ctx) }()
	defer func() { cancel(); <-done }()
	// armed: the loop waits on a timer that is not due yet.
	armed := func() time.Time {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if at, ok := clk.NextTimer(); ok && at.After(clk.Now()) {
				return at
			}
		}
		t.Fatal("the watchdog did not wait on a timer")
		return time.Time{}
	}
	if at := armed(); at.After(fenceAt) || at.Sub(t0) < 500*time.Millisecond {
		t.Fatalf("watchdog timer at +%v, want a slow one no later than the fence time +%v", at.Sub(t0), fenceAt.Sub(t0))
	}
	// Up to just before the fence time: woken by its timers, no fence.
	clk.Set(fenceAt.Add(-time.Millisecond))
	if at := armed(); !at.Equal(fenceAt) {
		t.Fatalf("watchdog timer at +%v, want the fence time +%v", at.Sub(t0), fenceAt.Sub(t0))
	}
	if !pg.Running() {
		t.Fatal("fenced before the fence time")
	}
	// Frozen for 10 s, then thawed: the timer is past due and fires at once.
	clk.Advance(10 * time.Second)
	for end := time.Now().Add(5 * time.Second); pg.Running() && time.Now().Before(end); time.Sleep(time.Millisecond) {
	}
	if pg.Running() || k.Writable() {
		t.Fatalf("after the thaw: running %v, writable %v; want fenced at once", pg.Running(), k.Writable())
	}
	pg.mu.Lock()
	stops := append([]pgctl.StopMode(nil), pg.stops...)
	pg.mu.Unlock()
	if len(stops) == 0 || stops[0] != pgctl.StopFast {
		t.Fatalf("stops %v, want a fast shutdown first", stops)
	}
}
