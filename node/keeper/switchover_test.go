package keeper

import (
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestSwitchoverStopReportsEarly: the old primary commits its shutdown
// checkpoint as soon as pg_control holds it, while its postmaster is still
// exiting, and notes the marker first; while pg_control does not say "shut
// down" (or cannot be read) nothing is reported before the exit, and the
// next round reports it from pg_controldata, as before. The watchdog does
// not fence the exiting postmaster once its shutdown checkpoint is written.
func TestSwitchoverStopReportsEarly(t *testing.T) {
	const lsn = 0x3000100
	for _, tc := range []struct {
		name    string
		control func() *pgctl.ControlFile // nil: pg_control unreadable
		early   bool
	}{
		{"pg_control holds the shutdown checkpoint", func() *pgctl.ControlFile {
			return &pgctl.ControlFile{State: pgctl.StateShutDown, CheckpointLSN: lsn}
		}, true},
		{"still shutting down", func() *pgctl.ControlFile {
			return &pgctl.ControlFile{State: "shutting down", CheckpointLSN: lsn - 0x100}
		}, false},
		{"pg_control unreadable", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, clk, lg, pg := primaryCluster(t)
			lg.MustApply(t, &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 2, Term: 1}}})
			release := make(chan struct{})
			pg.mu.Lock()
			pg.stopWait, pg.controlFile = release, tc.control
			pg.mu.Unlock()
			done := make(chan error, 1)
			go func() { done <- k.switchoverStop(t.Context(), 1) }()
			// 20 polls while the postmaster has not exited.
			for polls := 0; polls < 20 && lg.State().Switchover.GetShutdownLsn() == 0; {
				if _, ok := clk.NextTimer(); ok {
					clk.Advance(shutdownPoll)
					polls++
				}
				time.Sleep(time.Millisecond)
			}
			reported := lg.State().Switchover.GetShutdownLsn()
			if !pg.Running() {
				t.Fatal("the postmaster exited before it was released")
			}
			if got := k.shutDownExiting.Load(); got != tc.early {
				t.Fatalf("shutDownExiting %v while the postmaster exits, want %v", got, tc.early)
			}
			if tc.early {
				// The lease runs out while the postmaster still exits: the
				// watchdog leaves a Postgres past its shutdown checkpoint
				// alone (a fence would be a second Stop, held like the first).
				clk.Advance(10 * time.Second)
				ticked := make(chan struct{})
				go func() { k.WatchdogTick(t.Context()); close(ticked) }()
				select {
				case <-ticked:
				case <-time.After(2 * time.Second):
					close(release)
					t.Fatal("the watchdog fenced a Postgres that is past its shutdown checkpoint")
				}
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if k.shutDownExiting.Load() {
				t.Fatal("shutDownExiting still set after the exit")
			}
			if !tc.early {
				if reported != 0 {
					t.Fatalf("reported %s before the exit", pgctl.FormatLSN(reported))
				}
				return
			}
			if reported != lsn {
				t.Fatalf("shutdown checkpoint committed before the exit: %s, want %s", pgctl.FormatLSN(reported), pgctl.FormatLSN(lsn))
			}
			if term, got, ok := pg.SwitchoverMarker(); !ok || term != 1 || got != lsn {
				t.Fatalf("switchover marker %d %s %v, want term 1 at %s", term, pgctl.FormatLSN(got), ok, pgctl.FormatLSN(lsn))
			}
		})
	}
}
