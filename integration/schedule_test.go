package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestScheduledSwitchover (issue 13): `switchover --scheduled` and
// `--cancel`. Refusals (a past time, an unknown node, a witness, the
// primary, a second schedule) store nothing; a cancelled schedule never
// runs; a schedule survives the SIGKILL of the Raft leader's sidecar right
// after it was stored, and the new leader runs it at its time (not before)
// with every acknowledged write kept; `restart --scheduled --node` of a
// standby is run by the leader through the standby's own sidecar; a
// scheduled `restart --pending` after raising max_connections is a rolling
// restart driven by the leader: one switchover, nothing pending after it,
// no acknowledged write lost.
func TestScheduledSwitchover(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true})
	killed := ""
	addr := func() string { // a live member to ask
		for _, n := range s.lab.Nodes {
			if n.Name != killed {
				return n.GRPCAddr()
			}
		}
		return ""
	}
	scheduleEvents := func(typ string) int { return len(s.events(s.primary, typ)) }
	noSchedule := func(t *testing.T, why string) {
		t.Helper()
		j, err := s.showJSON(s.primary)
		if err != nil {
			t.Fatal(err)
		}
		if j.Scheduled != nil || j.Running != nil {
			t.Fatalf("%s: cluster show --json has scheduled %+v running %+v", why, j.Scheduled, j.Running)
		}
	}
	standby := s.standbys()[0]

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--to", standby, "--scheduled", "2020-01-01T00:00:00Z"}, "in the past"},
			{[]string{"--to", standby, "--scheduled", "tomorrow"}, "RFC 3339"},
			{[]string{"--to", "nope", "--scheduled", "+1m"}, `no node named "nope"`},
			{[]string{"--to", "witness", "--scheduled", "+1m"}, "is a witness"},
			{[]string{"--to", s.primary, "--scheduled", "+1m"}, "already the primary"},
			{[]string{"--cancel"}, "nothing is scheduled"},
		} {
			_, errOut, code := s.cli(append([]string{"switchover", "--addr", addr()}, tc.args...)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("switchover %v: exit %d, %q; want a refusal saying %q", tc.args, code, errOut, tc.want)
			}
			noSchedule(t, strings.Join(tc.args, " "))
		}
		if n := scheduleEvents(fsm.EventScheduled); n != 0 {
			t.Fatalf("%d operation_scheduled events after refusals only", n)
		}
		s.assertTerm(s.primary, 1)
	})

	t.Run("cancel", func(t *testing.T) {
		out, errOut, code := s.cli("switchover", "--addr", addr(), "--to", standby, "--scheduled", "+4s")
		if code != 0 || !strings.Contains(out, "scheduled: switchover to "+standby) || !strings.Contains(out, "now: ok:") {
			t.Fatalf("schedule: exit %d\n%s%s", code, out, errOut)
		}
		j, err := s.showJSON(s.primary)
		if err != nil {
			t.Fatal(err)
		}
		if j.Scheduled == nil || j.Scheduled.Kind != "switchover" || j.Scheduled.Target != standby || !strings.Contains(j.Scheduled.RequestedBy, "operator") {
			t.Fatalf("cluster show --json scheduled: %+v", j.Scheduled)
		}
		text, _, _ := s.cli("cluster", "show", "--addr", addr())
		if !strings.Contains(text, "Scheduled: switchover to "+standby) {
			t.Fatalf("cluster show does not show the schedule:\n%s", text)
		}
		_, errOut, code = s.cli("restart", "--addr", addr(), "--scheduled", "+1m", "--yes")
		if code != 1 || !strings.Contains(errOut, "already scheduled") || !strings.Contains(errOut, "switchover to "+standby) {
			t.Fatalf("second schedule: exit %d, %q; want a refusal naming the first", code, errOut)
		}
		out, errOut, code = s.cli("switchover", "--addr", addr(), "--cancel")
		if code != 0 || !strings.Contains(out, "cancelled: switchover to "+standby) {
			t.Fatalf("cancel: exit %d\n%s%s", code, out, errOut)
		}
		noSchedule(t, "after --cancel")
		time.Sleep(6 * time.Second) // past the time it had
		if n := scheduleEvents(fsm.EventScheduledStarted); n != 0 {
			t.Fatalf("a cancelled switchover started (%d scheduled_started events)", n)
		}
		if n := scheduleEvents(fsm.EventScheduledCancelled); n != 1 {
			t.Fatalf("%d scheduled_cancelled events, want 1", n)
		}
		s.assertTerm(s.primary, 1)
	})

	t.Run("survives the Raft leader's death", func(t *testing.T) {
		v, err := s.show(s.primary)
		if err != nil {
			t.Fatal(err)
		}
		if v.RaftLeader == s.primary {
			// Only a leader other than the primary is killed here: a
			// graceful restart of the primary's sidecar hands the
			// leadership away and keeps its postmaster.
			s.restartSidecar(s.primary)
			eventually(t, 20*time.Second, "a Raft leader other than the primary", func() string {
				v, err = s.show(s.primary)
				if err != nil {
					return err.Error()
				}
				if v.RaftLeader == "" || v.RaftLeader == s.primary {
					return "leader " + v.RaftLeader
				}
				return ""
			})
		}
		leader := v.RaftLeader
		target := ""
		for _, n := range s.standbys() {
			if n != leader && target == "" {
				target = n
			}
		}
		at := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
		out, errOut, code := s.cli("switchover", "--addr", s.node(leader).GRPCAddr(), "--to", target, "--scheduled", at.UTC().Format(time.RFC3339))
		if code != 0 {
			t.Fatalf("schedule: exit %d\n%s%s", code, out, errOut)
		}
		s.lab.KillSidecar(s.node(leader))
		killed = leader
		t.Logf("switchover to %s scheduled for %s; Raft leader %s killed %s before it", target, at.Format(time.RFC3339), leader, time.Until(at).Round(time.Millisecond))
		var done *pb.Event
		eventually(t, 40*time.Second, "a scheduled_done event", func() string {
			for _, n := range s.lab.Nodes {
				if n.Name == killed {
					continue
				}
				if evs := s.events(n.Name, fsm.EventScheduledDone); len(evs) > 0 {
					done = evs[len(evs)-1]
					return ""
				}
				if evs := s.events(n.Name, fsm.EventScheduledFailed); len(evs) > 0 {
					t.Fatalf("the scheduled switchover failed: %s", evs[len(evs)-1].Details)
				}
				return "not yet"
			}
			return "no member answers"
		})
		started := s.events(target, fsm.EventScheduledStarted)
		if len(started) != 1 {
			t.Fatalf("%d scheduled_started events, want 1", len(started))
		}
		st := started[0]
		if strings.Contains(st.Details, "started by "+leader) {
			t.Fatalf("started by the killed leader: %s", st.Details)
		}
		startedAt := time.UnixMilli(st.TimestampUnixMs)
		if startedAt.Before(at) {
			t.Fatalf("started at %s, before its time %s", startedAt.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
		}
		sw := s.events(target, fsm.EventSwitchover)
		if len(sw) != 1 || !sw[0].Ok {
			t.Fatalf("switchover events %v, want one that succeeded", sw)
		}
		t.Logf("scheduled switchover: started %s after its time (%s), switchover committed %s after it, done %s after it",
			startedAt.Sub(at).Round(time.Millisecond), st.Details, time.UnixMilli(sw[0].TimestampUnixMs).Sub(at).Round(time.Millisecond),
			time.UnixMilli(done.TimestampUnixMs).Sub(at).Round(time.Millisecond))
		if startedAt.Sub(at) > 10*time.Second {
			t.Fatalf("the new leader started the switchover %s after its time: the watcher did not fire at the time", startedAt.Sub(at))
		}
		s.followsOn(s.primary, target, 2, 60*time.Second)
		s.assertTerm(target, 2)
		noSchedule(t, "after the run")
		old := s.primary
		s.start(leader)
		killed = ""
		s.primary = target
		s.waitHealthy(60 * time.Second)
		acked := s.caughtUpAcks()
		s.assertHas(target, acked)
		s.assertHas(old, acked)
	})

	t.Run("scheduled restart of a standby", func(t *testing.T) {
		v, err := s.show(s.primary)
		if err != nil {
			t.Fatal(err)
		}
		node := ""
		for _, n := range s.standbys() {
			if n != v.RaftLeader && node == "" {
				node = n
			}
		}
		pm := s.node(node).PostmasterPID()
		out, errOut, code := s.cli("restart", "--addr", addr(), "--node", node, "--scheduled", "+2s", "--yes")
		if code != 0 || !strings.Contains(out, "scheduled: restart of "+node) {
			t.Fatalf("schedule the restart: exit %d\n%s%s", code, out, errOut)
		}
		eventually(t, 60*time.Second, "the scheduled restart done", func() string {
			for _, e := range s.events(s.primary, fsm.EventScheduledFailed) {
				if strings.Contains(e.Details, "restart of "+node) {
					t.Fatalf("the scheduled restart failed: %s", e.Details)
				}
			}
			for _, e := range s.events(s.primary, fsm.EventScheduledDone) {
				if strings.Contains(e.Details, "restart of "+node) {
					return ""
				}
			}
			return "not yet"
		})
		if got := s.node(node).PostmasterPID(); got == pm || got == 0 {
			t.Fatalf("%s's postmaster pid %d before, %d after the scheduled restart", node, pm, got)
		}
		s.followsOn(node, s.primary, 2, 30*time.Second)
		s.assertTerm(s.primary, 2)
	})

	t.Run("scheduled rolling restart, pending only", func(t *testing.T) {
		if _, errOut, code := s.cli("config", "set", "--addr", addr(), "postgresql.parameters.max_connections=150"); code != 0 {
			t.Fatalf("config set: %s", errOut)
		}
		eventually(t, 30*time.Second, "max_connections pending on every data node", func() string {
			v, err := s.show(s.primary)
			if err != nil {
				return err.Error()
			}
			for _, n := range v.Nodes {
				if n.Kind == pb.NodeKind_NODE_KIND_DATA && len(n.GetPostgres().GetPendingRestart()) == 0 {
					return n.Name + " not pending"
				}
			}
			return ""
		})
		out, errOut, code := s.cli("restart", "--addr", addr(), "--pending", "--scheduled", "+2s", "--yes")
		if code != 0 || !strings.Contains(out, "scheduled: rolling restart (pending only)") {
			t.Fatalf("schedule the rolling restart: exit %d\n%s%s", code, out, errOut)
		}
		var done string
		eventually(t, 3*time.Minute, "the scheduled rolling restart done", func() string {
			for _, e := range s.events(s.primary, fsm.EventScheduledFailed) {
				if strings.Contains(e.Details, "rolling restart") {
					t.Fatalf("the scheduled rolling restart failed: %s", e.Details)
				}
			}
			for _, e := range s.events(s.primary, fsm.EventScheduledDone) {
				if strings.Contains(e.Details, "rolling restart") {
					done = e.Details
					return ""
				}
			}
			return "not yet"
		})
		t.Logf("scheduled rolling restart: %s", done)
		v, err := s.show(s.primary)
		if err != nil {
			t.Fatal(err)
		}
		old := s.primary
		s.primary = primaryName(v)
		if s.primary == old {
			t.Fatalf("the rolling restart left %s the primary: it switches over", old)
		}
		s.assertTerm(s.primary, 3)
		for _, n := range v.Nodes {
			if n.Kind == pb.NodeKind_NODE_KIND_DATA && len(n.GetPostgres().GetPendingRestart()) != 0 {
				t.Fatalf("%s still pending after the scheduled restart: %v", n.Name, n.GetPostgres().GetPendingRestart())
			}
		}
		s.followsOn(old, s.primary, 3, 60*time.Second)
		acked := s.caughtUpAcks()
		s.assertHas(s.primary, acked)
	})
	s.writer.stop()
	if order := s.probe.check(t); len(order) != 3 || order[2] != s.primary {
		t.Fatalf("writable nodes in order %v, want three, %s last", order, s.primary)
	}
}
