package keeper

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

var t0 = time.Unix(1_700_000_000, 0)

// primaryCluster: pg1 the primary of term 1 holding the lease, pg2 a
// standby; the keeper is pg1's, its Postgres running and answering.
func primaryCluster(t *testing.T) (*Keeper, *clock.Manual, *fakelog.Log, *fakePG) {
	t.Helper()
	clk := clock.NewManual(t0)
	lg := fakelog.New(clk)
	must := func(cmd *pb.Command) { lg.MustApply(t, cmd) }
	must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{LeaseMs: 4000}}}})
	for _, n := range []string{"pg1", "pg2"} {
		must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: n, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
	}
	must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	must(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 2, UpstreamId: 1, Term: 1}}})
	pg := newFakePG()
	_ = pg.Start(context.Background())
	k := newTestKeeper(t, testConfig(t, "pg1"), clk, lg, pg)
	k.healthyAt.Store(clk.Now().UnixNano())
	return k, clk, lg, pg
}

// renewals counts the RenewLease commands proposed.
func renewals(lg *fakelog.Log) int {
	n := 0
	for _, c := range lg.Proposed() {
		if c.GetRenewLease() != nil {
			n++
		}
	}
	return n
}

// TestRenewLease: one pass of the lease keeper against a fake log and
// clock (lease 4 s: renewed every 1.33 s, 50 ms after a failed attempt).
func TestRenewLease(t *testing.T) {
	every := 4 * time.Second / config.RenewalsPerLease
	cases := []struct {
		name    string
		setup   func(k *Keeper, clk *clock.Manual, lg *fakelog.Log, pg *fakePG)
		renewed int           // RenewLease commands proposed
		valid   bool          // the local lease is valid afterwards
		next    time.Duration // from t0 (after setup's clock moves)
		release bool          // a ReleaseLease was proposed
	}{
		{name: "holder, healthy: renews", renewed: 1, valid: true, next: every},
		{name: "Postgres has not answered for 3 monitor intervals: no renewal", setup: func(k *Keeper, clk *clock.Manual, _ *fakelog.Log, _ *fakePG) {
			clk.Advance(3*time.Second + time.Millisecond)
		}, next: 3*time.Second + time.Millisecond + every},
		{name: "Postgres never answered: no renewal", setup: func(k *Keeper, _ *clock.Manual, _ *fakelog.Log, _ *fakePG) {
			k.healthyAt.Store(0)
		}, next: every},
		{name: "no leader: retried after 50 ms", setup: func(_ *Keeper, _ *clock.Manual, lg *fakelog.Log, _ *fakePG) {
			lg.FailWith(func(*pb.Command) error { return errors.New("no leader") })
		}, renewed: 1, next: renewRetry},
		{name: "refused: the lease is gone", setup: func(_ *Keeper, _ *clock.Manual, lg *fakelog.Log, _ *fakePG) {
			lg.FailWith(func(*pb.Command) error { return &fsm.Error{Code: fsm.CodeStaleTerm, Msg: "stale"} })
		}, renewed: 1, next: every},
		{name: "not the holder: nothing", setup: func(_ *Keeper, _ *clock.Manual, lg *fakelog.Log, _ *fakePG) {
			lg.Apply(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: fsm.EventFailover, LeaseSerial: lg.State().Lease.Serial, LeaseMs: 4000}}})
		}, next: every},
		{name: "stopping: nothing", setup: func(k *Keeper, _ *clock.Manual, _ *fakelog.Log, _ *fakePG) { k.SetStopping() }, next: every},
		{name: "crashed longer than restart_timeout: released", setup: func(k *Keeper, clk *clock.Manual, _ *fakelog.Log, pg *fakePG) {
			pg.crash()
			k.crashedAt = clk.Now()
			clk.Advance(k.cfg.Postgres.RestartTimeout.D())
		}, release: true, next: every},
		{name: "released, a restart_timeout not over since: stays released", setup: func(k *Keeper, clk *clock.Manual, lg *fakelog.Log, pg *fakePG) {
			k.cfg.Postgres.RestartTimeout = config.Duration(10 * time.Second)
			pg.crash()
			k.crashedAt = clk.Now()
			releaseLease(t, lg)
			clk.Advance(20*time.Second - time.Millisecond)
		}, next: 20*time.Second - time.Millisecond + every},
		{name: "released a restart_timeout ago, still the primary: reclaims the lease to restart in place", setup: func(k *Keeper, clk *clock.Manual, lg *fakelog.Log, pg *fakePG) {
			k.cfg.Postgres.RestartTimeout = config.Duration(10 * time.Second)
			pg.crash()
			k.crashedAt = clk.Now()
			releaseLease(t, lg)
			clk.Advance(20 * time.Second)
		}, renewed: 1, valid: true, next: 20*time.Second + every},
		{name: "restart_timeout 0, released a moment ago: stays released (the leader gets a whole lease to fail over)", setup: func(k *Keeper, clk *clock.Manual, lg *fakelog.Log, pg *fakePG) {
			k.cfg.Postgres.RestartTimeout = 0
			pg.crash()
			k.crashedAt = clk.Now()
			releaseLease(t, lg)
			clk.Advance(4*time.Second - time.Millisecond)
		}, next: 4*time.Second - time.Millisecond + every},
		{name: "restart_timeout 0, released a lease ago, still the primary: reclaims", setup: func(k *Keeper, clk *clock.Manual, lg *fakelog.Log, pg *fakePG) {
			k.cfg.Postgres.RestartTimeout = 0
			pg.crash()
			k.crashedAt = clk.Now()
			releaseLease(t, lg)
			clk.Advance(4 * time.Second)
		}, renewed: 1, valid: true, next: 4*time.Second + every},
		{name: "crashed, restart_timeout not over: keeps renewing", setup: func(k *Keeper, clk *clock.Manual, _ *fakelog.Log, pg *fakePG) {
			k.cfg.Postgres.RestartTimeout = config.Duration(10 * time.Second)
			pg.crash()
			k.crashedAt = clk.Now()
			clk.Advance(time.Second)
		}, renewed: 1, valid: true, next: time.Second + every},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, clk, lg, pg := primaryCluster(t)
			if tc.setup != nil {
				tc.setup(k, clk, lg, pg)
			}
			next := k.RenewLease(context.Background())
			if got := renewals(lg); got != tc.renewed {
				t.Fatalf("%d renewals proposed, want %d", got, tc.renewed)
			}
			if got := k.leaseValid(); got != tc.valid {
				t.Fatalf("leaseValid = %v, want %v", got, tc.valid)
			}
			if got := next.Sub(t0); got != tc.next {
				t.Fatalf("next pass at t0+%v, want t0+%v", got, tc.next)
			}
			released := false
			for _, c := range lg.Proposed() {
				released = released || c.GetReleaseLease() != nil
			}
			if released != tc.release {
				t.Fatalf("release proposed: %v, want %v", released, tc.release)
			}
		})
	}
}

// releaseLease commits the holder's ReleaseLease on the fake log.
func releaseLease(t *testing.T, lg *fakelog.Log) {
	t.Helper()
	st := lg.State()
	if res := lg.Apply(&pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: st.Lease.HolderId, Term: st.Term, Reason: "test"}}}); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// TestRenewLeaseDeadline: the local deadline is t_send + lease, noted
// before proposing, and a later pass renews only once a third of the lease
// has passed.
func TestRenewLeaseDeadline(t *testing.T) {
	k, clk, lg, _ := primaryCluster(t)
	k.RenewLease(context.Background())
	if k.lease.deadline != t0.Add(4*time.Second) || k.lease.last != k.lease.deadline {
		t.Fatalf("deadline %v (last %v), want t0+4s", k.lease.deadline, k.lease.last)
	}
	clk.Advance(time.Second)
	k.healthyAt.Store(clk.Now().UnixNano())
	if next := k.RenewLease(context.Background()); renewals(lg) != 1 || next != t0.Add(4*time.Second/config.RenewalsPerLease) {
		t.Fatalf("a pass before lease/3: %d renewals, next %v", renewals(lg), next.Sub(t0))
	}
	clk.Advance(time.Second / 2)
	k.RenewLease(context.Background())
	if renewals(lg) != 2 || k.lease.deadline != clk.Now().Add(4*time.Second) {
		t.Fatalf("after lease/3: %d renewals, deadline t0+%v", renewals(lg), k.lease.deadline.Sub(t0))
	}
}

// TestWatchdog: the fencing watchdog against a fake Postgres and clock:
// it fences fenceMargin (500 ms) before the deadline, at once when the FSM
// names another primary, never a standby; it keeps the guard armed with
// the deadline minus 100 ms; an unexpected exit with restart_timeout 0
// releases the lease (aside).
func TestWatchdog(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		setup   func(k *Keeper, clk *clock.Manual, lg *fakelog.Log, pg *fakePG)
		fenced  bool
		guard   time.Duration // the guard's deadline from t0 (0: disarmed or stopped); told before the fence in the same tick
		events  []string      // RecordEvent types proposed once Aside ran
		release bool
	}{
		{name: "valid lease: nothing", setup: func(_ *Keeper, clk *clock.Manual, _ *fakelog.Log, _ *fakePG) {
			clk.Advance(3500*time.Millisecond - time.Millisecond)
		}, guard: 3900 * time.Millisecond},
		{name: "fenceMargin before the deadline: fenced", setup: func(_ *Keeper, clk *clock.Manual, _ *fakelog.Log, _ *fakePG) {
			clk.Advance(3500 * time.Millisecond)
		}, fenced: true, guard: 3900 * time.Millisecond, events: []string{fsm.EventFence}},
		{name: "another primary named: fenced at once", setup: func(_ *Keeper, _ *clock.Manual, lg *fakelog.Log, _ *fakePG) {
			lg.Apply(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: fsm.EventFailover, LeaseSerial: lg.State().Lease.Serial, LeaseMs: 4000}}})
		}, fenced: true, guard: 3900 * time.Millisecond, events: []string{fsm.EventFence}},
		{name: "a standby is never fenced", setup: func(k *Keeper, clk *clock.Manual, _ *fakelog.Log, _ *fakePG) {
			k.standbyMode.Store(true)
			clk.Advance(10 * time.Second)
		}},
		{name: "stopping: not fenced", setup: func(k *Keeper, clk *clock.Manual, _ *fakelog.Log, _ *fakePG) {
			k.SetStopping()
			clk.Advance(10 * time.Second)
		}, guard: 3900 * time.Millisecond},
		{name: "crash with restart_timeout 0: released", setup: func(k *Keeper, _ *clock.Manual, _ *fakelog.Log, pg *fakePG) {
			k.WatchdogTick(ctx) // seen running
			pg.crash()
		}, release: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, clk, lg, pg := primaryCluster(t)
			fences := 0
			k.hooks.Fenced = func() { fences++ }
			k.RenewLease(ctx) // deadline t0+4s
			tc.setup(k, clk, lg, pg)
			k.WatchdogTick(ctx)
			if got := len(pg.stops) > 0 && pg.stops[0] == pgctl.StopFast; got != tc.fenced || (fences == 1) != tc.fenced {
				t.Fatalf("fenced %v (stops %v, hook %d), want %v", got, pg.stops, fences, tc.fenced)
			}
			if tc.fenced && pg.Running() {
				t.Fatal("fenced but Postgres still runs")
			}
			want := time.Time{}
			if tc.guard != 0 {
				want = t0.Add(tc.guard)
			}
			if !pg.guardArmed.Equal(want) {
				t.Fatalf("guard deadline %v, want %v", pg.guardArmed, want)
			}
			before := len(lg.Proposed())
			k.Aside(ctx)
			var events []string
			released := false
			for _, c := range lg.Proposed()[before:] {
				if e := c.GetRecordEvent(); e != nil {
					events = append(events, e.Type)
				}
				released = released || c.GetReleaseLease() != nil
			}
			if len(events) != len(tc.events) || (len(events) > 0 && events[0] != tc.events[0]) {
				t.Fatalf("events %v, want %v", events, tc.events)
			}
			if released != tc.release {
				t.Fatalf("released %v, want %v", released, tc.release)
			}
		})
	}
}

// TestGuardFollowsPostgres: the guard runs only beside a running
// postmaster and is disarmed on a standby.
func TestGuardFollowsPostgres(t *testing.T) {
	ctx := context.Background()
	k, _, _, pg := primaryCluster(t)
	k.RenewLease(ctx)
	k.WatchdogTick(ctx)
	if !pg.guardOn || pg.guardStarts != 1 || !pg.guardArmed.Equal(t0.Add(3900*time.Millisecond)) {
		t.Fatalf("primary: guard on %v starts %d armed %v", pg.guardOn, pg.guardStarts, pg.guardArmed)
	}
	k.standbyMode.Store(true)
	k.WatchdogTick(ctx)
	if !pg.guardOn || !pg.guardArmed.IsZero() || pg.guardStarts != 1 {
		t.Fatalf("standby: guard on %v armed %v starts %d, want on and disarmed", pg.guardOn, pg.guardArmed, pg.guardStarts)
	}
	k.SetStopping() // no crash handling
	pg.crash()
	k.WatchdogTick(ctx)
	if pg.guardOn {
		t.Fatal("the guard still runs after Postgres stopped")
	}
}

// TestGuardArmedBeforeWritable: the guard is told the lease deadline before
// the postmaster starts as primary and before pg_promote, so that a sidecar
// frozen right after either leaves no writable Postgres without an armed
// guard (the simulator's unguarded-writable invariant); a standby starts
// with its guard disarmed.
func TestGuardArmedBeforeWritable(t *testing.T) {
	ctx := context.Background()
	want := t0.Add(3900 * time.Millisecond) // lease 4 s from t0, less guardMargin
	t.Run("start as primary", func(t *testing.T) {
		k, _, _, pg := primaryCluster(t)
		k.RenewLease(ctx)
		k.SetStopping()
		pg.crash()
		k.WatchdogTick(ctx) // Postgres is down: the guard goes
		if pg.guardOn {
			t.Fatal("a guard runs with Postgres down")
		}
		if err := k.start(ctx, action{Kind: actStart, Term: 1}); err != nil {
			t.Fatal(err)
		}
		if !pg.armedAtStart.Equal(want) {
			t.Fatalf("guard deadline when the postmaster started: %v, want %v", pg.armedAtStart, want)
		}
	})
	t.Run("start as standby", func(t *testing.T) {
		k, _, _, pg := primaryCluster(t)
		k.RenewLease(ctx)
		k.WatchdogTick(ctx)
		k.SetStopping()
		pg.crash()
		k.WatchdogTick(ctx)
		pg.standbySignal = true
		if err := k.start(ctx, action{Kind: actStart, AsStandby: true, Term: 1}); err != nil {
			t.Fatal(err)
		}
		if !pg.armedAtStart.IsZero() {
			t.Fatalf("a standby's postmaster started with the guard armed until %v", pg.armedAtStart)
		}
	})
	t.Run("promotion", func(t *testing.T) {
		k, _, _, pg := primaryCluster(t)
		k.RenewLease(ctx)
		pg.inRecovery = true
		pg.loaded = map[string]string{"synchronous_standby_names": k.syncSetting(k.log.State())}
		k.standbyMode.Store(true)
		k.WatchdogTick(ctx) // a standby: disarmed
		if !pg.guardArmed.IsZero() {
			t.Fatal("a standby's guard is armed")
		}
		if err := k.promote(ctx, action{Kind: actPromote, Term: 1}); err != nil {
			t.Fatal(err)
		}
		if !pg.armedAtPromote.Equal(want) {
			t.Fatalf("guard deadline when pg_promote ran: %v, want %v", pg.armedAtPromote, want)
		}
	})
}

// TestAnchorLease: a node promoted on one of its own LSN answers holds its
// first lease from the moment that answer was made (the answer's time +
// the lease), with no renewal before pg_promote; an anchor this process
// did not hand out (an earlier run's, one pushed out of the log, none)
// gives nothing and the promotion renews first, as before.
func TestAnchorLease(t *testing.T) {
	// clkOf: the test keeper's manual clock (to date an answer earlier).
	clkOf := func(k *Keeper) *clock.Manual { return k.clk.(*clock.Manual) }
	ctx := context.Background()
	const decideAfter = 300 * time.Millisecond // the answer, then the decision's commit
	cases := []struct {
		name     string
		anchor   func(k *Keeper) uint64 // the Promote's lease_anchor
		leaseMs  int64                  // the cluster's lease (Settings.lease_ms)
		anchored bool                   // the first lease came from the answer
		deadline time.Duration          // from t0: the local deadline after promote
	}{
		{"own answer", func(k *Keeper) uint64 { return k.NoteAnswer() }, 4000, true, 4 * time.Second},
		{"shorter cluster lease", func(k *Keeper) uint64 { return k.NoteAnswer() }, 2000, true, 2 * time.Second},
		{"no anchor", func(k *Keeper) uint64 { k.NoteAnswer(); return 0 }, 4000, false, decideAfter + 4*time.Second},
		{"another run's answer", func(k *Keeper) uint64 { return k.NoteAnswer() + 7 }, 4000, false, decideAfter + 4*time.Second},
		{"decided after the answer's lease ran out", func(k *Keeper) uint64 {
			tok := k.NoteAnswer()
			clkOf(k).Advance(4100 * time.Millisecond)
			return tok
		}, 4000, false, 4100*time.Millisecond + decideAfter + 4*time.Second},
		{"pushed out of the log", func(k *Keeper) uint64 {
			tok := k.NoteAnswer()
			for range answersKept {
				k.NoteAnswer()
			}
			return tok
		}, 4000, false, decideAfter + 4*time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(t0)
			lg := fakelog.New(clk)
			must := func(cmd *pb.Command) { lg.MustApply(t, cmd) }
			must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{LeaseMs: tc.leaseMs}}}})
			for _, n := range []string{"pg1", "pg2"} {
				must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: n, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
			}
			must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: tc.leaseMs}}})
			must(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 2, UpstreamId: 1, Term: 1}}})
			pg := newFakePG()
			pg.inRecovery = true
			_ = pg.Start(ctx)
			k := newTestKeeper(t, testConfig(t, "pg2"), clk, lg, pg)
			k.healthyAt.Store(clk.Now().UnixNano())
			k.standbyMode.Store(true)

			anchor := tc.anchor(k) // the answer leaves at t0
			clk.Advance(decideAfter)
			st := lg.State()
			must(fsm.Promote(st, fsm.Promotion{NodeID: 2, Reason: fsm.EventFailover, LeaseSerial: st.GetLease().GetSerial(),
				Timeline: 1, LeaseAnchor: anchor}, 4*time.Second))
			if got := lg.State().GetLease().GetAnchor(); got != anchor {
				t.Fatalf("the Promote's anchor %d reached the lease as %d", anchor, got)
			}
			k.healthyAt.Store(clk.Now().UnixNano())
			pg.loaded = map[string]string{"synchronous_standby_names": k.syncSetting(lg.State())}
			before := renewals(lg)
			if err := k.promote(ctx, action{Kind: actPromote, Term: 2}); err != nil {
				t.Fatal(err)
			}
			// promote renews once more after pg_promote (the new timeline):
			// one renewal in all when anchored, two when it had to renew first.
			want := 2
			if tc.anchored {
				want = 1
			}
			if got := renewals(lg) - before; got != want {
				t.Fatalf("%d renewals during the promotion, want %d", got, want)
			}
			if wantArm := t0.Add(tc.deadline - guardMargin); !pg.armedAtPromote.Equal(wantArm) {
				t.Fatalf("guard armed until t0+%v when pg_promote ran, want t0+%v", pg.armedAtPromote.Sub(t0), wantArm.Sub(t0))
			}
			if lg.State().GetLease().GetAnchor() != 0 {
				t.Fatal("a renewal left the anchor in the lease")
			}
		})
	}
}
