package keeper

import (
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestAdoptHoldsOffTheWatchdog: a watchdog tick that comes while an
// adoption has attached the guard but not yet taken the postmaster waits
// for it; it used to see no running Postgres and close the adopted guard's
// connection, and the unrenewed guard then killed the primary
// (TestSidecarRestart, 2026-12-03).
func TestAdoptHoldsOffTheWatchdog(t *testing.T) {
	clk := clock.NewManual(t0)
	lg := fakelog.New(clk)
	must := func(cmd *pb.Command) { lg.MustApply(t, cmd) }
	must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{LeaseMs: 4000}}}})
	must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
	must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	pg := newFakePG() // the postmaster the previous sidecar left: not ours yet
	k := newTestKeeper(t, testConfig(t, "pg1"), clk, lg, pg)
	ticked := make(chan struct{})
	pg.adoptGuard = func(int) pgctl.GuardStatus { return pgctl.GuardStatus{Armed: true, Term: 1, PID: 4242} }
	pg.beforeAdopt = func() {
		// Between the guard's attachment and the postmaster's adoption.
		go func() { k.WatchdogTick(t.Context()); close(ticked) }()
		time.Sleep(50 * time.Millisecond)
	}
	if err := k.adopt(t.Context(), action{Kind: actAdopt, Term: 1, PID: 4242, InheritLease: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ticked:
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog tick did not finish after the adoption")
	}
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.guardStops != 0 || !pg.guardOn {
		t.Fatalf("the watchdog stopped the adopted guard (%d stops, guard on %v)", pg.guardStops, pg.guardOn)
	}
}
