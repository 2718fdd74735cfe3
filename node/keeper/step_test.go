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
	// Cut off: nothing commits any more. Step in 50 ms ticks as Run would.
	lg.FailWith(func(*pb.Command) error { return errors.New("no quorum") })
	renewedAt := clk.Now()
	next := k.RenewLease(ctx)
	for clk.Now().Sub(renewedAt) < 4*time.Second && pg.Running() {
		clk.Advance(WatchdogInterval)
		if !clk.Now().Before(next) {
			next = k.RenewLease(ctx)
		}
		k.healthyAt.Store(clk.Now().UnixNano()) // Postgres itself stays healthy
		k.WatchdogTick(ctx)
		k.Aside(ctx)
	}
	if pg.Running() {
		t.Fatal("still running at the lease deadline")
	}
	if held := clk.Now().Sub(renewedAt); held > 4*time.Second-fenceMargin(k.cfg)+WatchdogInterval {
		t.Fatalf("fenced %v after the last renewal, want by lease - fenceMargin (+ one tick)", held)
	}
	if len(pg.stops) == 0 || pg.stops[0] != pgctl.StopFast || k.Writable() {
		t.Fatalf("after the fence: stops %v, writable %v", pg.stops, k.Writable())
	}
}
