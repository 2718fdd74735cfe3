package keeper

import (
	"context"
	"errors"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/hasidecar/hasidecar/internal/fakelog"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func setLease(t *testing.T, lg *fakelog.Log, lease string) {
	t.Helper()
	v := lg.State().GetSettings().GetConfigVersion()
	lg.MustApply(t, &pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: &pb.SetConfig{Version: v, Changes: []*pb.ConfigChange{{Key: "timing.lease", Value: lease}}}}})
}

// leaderExpiry is when the leader counts the lease as expired (before its
// drift margin): the apply of the latest renewal plus the length it carried.
func leaderExpiry(lg *fakelog.Log) time.Time {
	l, at := lg.Lease()
	return at.Add(time.Duration(l.DurationMs) * time.Millisecond)
}

// TestClusterLeaseCaps: a shorter cluster timing.lease cuts the local and
// the guard's deadline to t_send + the new length before the renewal is
// proposed (the leader counts the new length from the renewal's apply,
// answered or not); a longer one extends them only once its renewal is
// answered.
func TestClusterLeaseCaps(t *testing.T) {
	ctx := context.Background()
	k, clk, lg, pg := primaryCluster(t)
	k.RenewLease(ctx)
	k.guardTick()
	if k.lease.deadline != t0.Add(4*time.Second) || !pg.guardArmed.Equal(t0.Add(3900*time.Millisecond)) {
		t.Fatalf("set-up: deadline t0+%v, guard t0+%v", k.lease.deadline.Sub(t0), pg.guardArmed.Sub(t0))
	}

	clk.Advance(1500 * time.Millisecond)
	k.healthyAt.Store(clk.Now().UnixNano())
	setLease(t, lg, "2s")
	// The renewal commits but its answer is lost: what the keeper did
	// before proposing is all that protects it.
	var atPropose struct{ deadline, guard time.Time }
	var sent int64
	lg.FailWith(func(cmd *pb.Command) error {
		atPropose.deadline, atPropose.guard = k.lease.deadline, pg.guardArmed
		sent = cmd.GetRenewLease().GetDurationMs()
		lg.Apply(cmd)
		return errors.New("answer lost")
	})
	k.RenewLease(ctx)
	tSend := t0.Add(1500 * time.Millisecond)
	if sent != 2000 {
		t.Fatalf("the renewal asked for %d ms, want the cluster's 2000", sent)
	}
	if want := tSend.Add(2 * time.Second); !atPropose.deadline.Equal(want) || !atPropose.guard.Equal(want.Add(-guardMargin)) {
		t.Errorf("when proposing: deadline t0+%v, guard t0+%v; want t0+%v and t0+%v",
			atPropose.deadline.Sub(t0), atPropose.guard.Sub(t0), want.Sub(t0), want.Add(-guardMargin).Sub(t0))
	}
	if e := leaderExpiry(lg); k.lease.deadline.After(e) || k.lease.last.After(e) {
		t.Errorf("deadline t0+%v (last t0+%v) outlasts the leader's expiry t0+%v", k.lease.deadline.Sub(t0), k.lease.last.Sub(t0), e.Sub(t0))
	}

	// Longer again: nothing extended until a renewal is answered, then
	// t_send + 6 s, which the leader's count (apply + 6 s) covers.
	lg.FailWith(nil)
	setLease(t, lg, "6s")
	before := k.lease.deadline
	clk.Advance(100 * time.Millisecond)
	k.healthyAt.Store(clk.Now().UnixNano())
	lg.FailWith(func(*pb.Command) error {
		if !k.lease.deadline.Equal(before) {
			t.Errorf("a longer lease moved the deadline before its renewal was answered")
		}
		return nil
	})
	k.RenewLease(ctx)
	if want := clk.Now().Add(6 * time.Second); !k.lease.deadline.Equal(want) || k.lease.deadline.After(leaderExpiry(lg)) {
		t.Errorf("after the 6 s renewal: deadline t0+%v, want t0+%v (leader's expiry t0+%v)", k.lease.deadline.Sub(t0), want.Sub(t0), leaderExpiry(lg).Sub(t0))
	}
}

// TestPropertyClusterLeaseNeverOutlastsLeader: whatever the order of lease
// changes, renewals (answered, lost before commit, committed but
// unanswered) and time, neither the local deadline nor the guard's ever
// lies past the leader's expiry of the latest committed renewal — checked
// at every step and at the moment each renewal commits.
func TestPropertyClusterLeaseNeverOutlastsLeader(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		k, clk, lg, pg := primaryCluster(t)
		ctx := context.Background()
		check := func(when string) {
			e := leaderExpiry(lg)
			if k.lease.deadline.After(e) || k.lease.last.After(e) {
				rt.Fatalf("%s: deadline t0+%v (last t0+%v) past the leader's expiry t0+%v", when, k.lease.deadline.Sub(t0), k.lease.last.Sub(t0), e.Sub(t0))
			}
			// (never granted: armGuard gives the guard a deadline already past)
			if !k.lease.last.IsZero() && pg.guardArmed.After(e.Add(-guardMargin)) {
				rt.Fatalf("%s: guard armed until t0+%v, past the leader's expiry t0+%v less the margin", when, pg.guardArmed.Sub(t0), e.Sub(t0))
			}
		}
		for i := rapid.IntRange(1, 40).Draw(rt, "steps"); i > 0; i-- {
			switch rapid.IntRange(0, 3).Draw(rt, "step") {
			case 0:
				clk.Advance(time.Duration(rapid.IntRange(0, 1500).Draw(rt, "ms")) * time.Millisecond)
				k.healthyAt.Store(clk.Now().UnixNano())
			case 1:
				lease := rapid.SampledFrom([]string{"1s", "2s", "4s", "6s", "10s"}).Draw(rt, "lease")
				v := lg.State().GetSettings().GetConfigVersion()
				lg.Apply(&pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: &pb.SetConfig{Version: v, Changes: []*pb.ConfigChange{{Key: "timing.lease", Value: lease}}}}})
			case 2:
				outcome := rapid.IntRange(0, 2).Draw(rt, "outcome")
				lg.FailWith(func(cmd *pb.Command) error {
					switch outcome {
					case 1:
						return errors.New("no leader")
					case 2:
						lg.Apply(cmd)
						check("at the commit of an unanswered renewal")
						return errors.New("answer lost")
					}
					return nil
				})
				k.RenewLease(ctx)
				lg.FailWith(nil)
			case 3:
				k.guardTick()
			}
			check("after a step")
		}
	})
}

// TestManagedSettingsMerge: the cluster's postgresql.parameters reach the
// managed file, a node's own postgres.parameters win over them, and no
// parameter overrides a config.ManagedParameters setting.
func TestManagedSettingsMerge(t *testing.T) {
	k, _, lg, _ := primaryCluster(t)
	k.cfg.Postgres.Parameters = map[string]string{"work_mem": "32MB"}
	lg.MustApply(t, &pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: &pb.SetConfig{Changes: []*pb.ConfigChange{
		{Key: "postgresql.parameters.work_mem", Value: "8MB"},
		{Key: "postgresql.parameters.max_connections", Value: "150"},
		{Key: "postgresql.parameters.log_connections", Value: "on"}, // a default of pgctl's, not managed
	}}}})
	// A state written by hand (or an older version) with a managed name.
	st := lg.State()
	st.Settings.PostgresParameters["cluster_name"] = "evil"
	st.Settings.PostgresParameters["synchronous_standby_names"] = "*"
	got := k.settingsFor(st)
	for name, want := range map[string]string{"work_mem": "32MB", "max_connections": "150", "log_connections": "on", "cluster_name": "pg1", "synchronous_standby_names": k.syncSetting(st)} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
}
