package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// started is a healthy cluster with a prober and a writer running.
type started struct {
	*cluster
	primary string
	probe   *prober
	writer  *writer
}

func startWorkload(t *testing.T, o clusterOpts) *started {
	t.Helper()
	needPostgres(t)
	c := newCluster(t, o)
	c.start()
	v := c.waitHealthy(120 * time.Second)
	s := &started{cluster: c, primary: primaryName(v)}
	s.probe = c.startProber(s.primary)
	s.writer = c.startWriter(s.primary)
	time.Sleep(time.Second)
	return s
}

// standbys are the data nodes other than the primary.
func (s *started) standbys() []string {
	var out []string
	for _, n := range s.lab.DataNodes() {
		if n.Name != s.primary {
			out = append(out, n.Name)
		}
	}
	return out
}

// caughtUpAcks returns the writes acknowledged so far once every standby
// has replayed them.
func (s *started) caughtUpAcks() []int {
	ids := s.writer.ackedIDs()
	s.waitCaughtUp(s.primary, s.standbys()...)
	return ids
}

// waitNewPrimary waits until a survivor other than old is the FSM's primary,
// running writable, and returns its name.
func (s *started) waitNewPrimary(old string, timeout time.Duration) string {
	s.t.Helper()
	var np string
	eventually(s.t, timeout, "a new primary", func() string {
		for _, n := range s.lab.Nodes {
			if n.Name == old {
				continue
			}
			v, err := s.show(n.Name)
			if err != nil {
				continue
			}
			for _, row := range v.Nodes {
				if row.Role == pb.NodeRole_NODE_ROLE_PRIMARY && row.Name != old && row.Postgres.GetRunning() && !row.Postgres.GetInRecovery() {
					np = row.Name
					return ""
				}
			}
			return "primary is " + primaryName(v)
		}
		return "no survivor answers"
	})
	return np
}

// events returns the events of a type, oldest first.
func (c *cluster) events(via, typ string) []*pb.Event {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.clusterClient(c.node(via).GRPCAddr()).Events(ctx, &pb.EventsRequest{EventType: typ})
	if err != nil {
		c.t.Fatalf("events: %v", err)
	}
	out := resp.Events
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// awaitEvents waits until via lists an event of typ and returns them,
// oldest first: a sidecar records what it did (a promotion, say) through
// the Raft leader a moment after it is visible, later still while Raft
// elects a new leader.
func (c *cluster) awaitEvents(via, typ string, timeout time.Duration) []*pb.Event {
	c.t.Helper()
	var out []*pb.Event
	eventually(c.t, timeout, "a "+typ+" event on "+via, func() string {
		if out = c.events(via, typ); len(out) == 0 {
			return "none yet"
		}
		return ""
	})
	return out
}

// followsOn waits until node streams from upstream on timeline tli.
func (c *cluster) followsOn(node, upstream string, tli uint32, timeout time.Duration) {
	c.t.Helper()
	eventually(c.t, timeout, fmt.Sprintf("%s streaming from %s on timeline %d", node, upstream, tli), func() string {
		v, err := c.show("")
		if err != nil {
			return err.Error()
		}
		for _, row := range v.Nodes {
			if row.Name != node {
				continue
			}
			pg := row.Postgres
			switch {
			case row.Upstream != upstream || row.Role != pb.NodeRole_NODE_ROLE_STANDBY:
				return fmt.Sprintf("role %v upstream %q", row.Role, row.Upstream)
			case !pg.GetInRecovery() || pg.GetWalReceiverStatus() != "streaming":
				return fmt.Sprintf("not streaming (%v)", pg)
			case row.Timeline != tli:
				return fmt.Sprintf("timeline %d", row.Timeline)
			}
			return ""
		}
		return node + " not listed"
	})
}

// assertTerm checks the FSM's voting term.
func (c *cluster) assertTerm(via string, want uint64) {
	c.t.Helper()
	v, err := c.show(via)
	if err != nil {
		c.t.Fatal(err)
	}
	if v.Term != want {
		c.t.Fatalf("term %d, want %d", v.Term, want)
	}
}

// TestFailoverHostDeath (scenarios 1 and 5): the primary's host dies
// (sidecar and Postgres killed at once); the quorum of the standbys and the
// witness promotes one standby, the other follows it; every write
// acknowledged before the failure is on the new primary; the old primary,
// brought back, rewinds and rejoins as a standby on the new timeline.
func TestFailoverHostDeath(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true})
	acked := s.caughtUpAcks()
	old := s.primary
	killedAt := time.Now()
	s.lab.KillHost(s.node(old))
	np := s.waitNewPrimary(old, 30*time.Second)
	t.Logf("%s promoted %s after the host of %s died", np, time.Since(killedAt).Round(10*time.Millisecond), old)
	var other string
	for _, n := range s.standbys() {
		if n != np {
			other = n
		}
	}
	s.followsOn(other, np, 2, 30*time.Second)
	s.assertTerm(np, 2)
	if ev := s.events(np, "failover"); len(ev) != 1 {
		t.Fatalf("%d failover events, want 1: %v", len(ev), ev)
	}
	if ev := s.events(np, "standby_promote"); len(ev) != 1 || ev[0].NodeName != np {
		t.Fatalf("standby_promote events: %v", ev)
	}
	s.assertHas(np, acked)

	// Scenario 5: the old primary comes back as a standby of the new one.
	s.start(old)
	s.followsOn(old, np, 2, 60*time.Second)
	if ev := s.awaitEvents(np, "node_rejoin", 10*time.Second); len(ev) != 1 || ev[0].NodeName != old {
		t.Fatalf("node_rejoin events: %v", ev)
	}
	s.assertHas(old, acked)
	order := s.probe.check(t)
	if len(order) != 2 || order[0] != old || order[1] != np {
		t.Fatalf("writable nodes in order %v, want [%s %s]", order, old, np)
	}
	s.assertTerm(np, 2)
}

// TestFailoverSidecarDeath (scenario 2): the primary's sidecar is killed
// alone; its guard, left with the last lease deadline, stops Postgres
// before the lease ends (DESIGN.md "Restarting the sidecar"), and so before
// any promotion.
func TestFailoverSidecarDeath(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
	acked := s.caughtUpAcks()
	old := s.node(s.primary)
	pm := old.PostmasterPID()
	if pm == 0 {
		t.Fatal("no postmaster pid for the primary")
	}
	s.lab.KillSidecar(old)
	killedAt := time.Now()
	// Polled every 5 ms, so goneAt is at most that after the postmaster
	// died; the failover decision must come after it (by about half a
	// second: the guard kills 0.1 s before the deadline, the leader
	// decides at the renewal's apply + lease + drift margin).
	var goneAt time.Time
	for until := killedAt.Add(6 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if !processAlive(pm) {
			goneAt = time.Now()
			break
		}
		if time.Now().After(until) {
			t.Fatalf("the primary's postmaster %d still runs 6 s after its sidecar was killed", pm)
		}
	}
	t.Logf("postmaster stopped by its guard %s after its sidecar was killed", goneAt.Sub(killedAt).Round(time.Millisecond))
	np := s.waitNewPrimary(s.primary, 30*time.Second)
	fo := s.awaitEvents(np, "failover", 10*time.Second)
	if len(fo) != 1 {
		t.Fatalf("failover events: %v", fo)
	}
	if decided := time.UnixMilli(fo[0].TimestampUnixMs); decided.Before(goneAt.Add(-10 * time.Millisecond)) {
		t.Fatalf("the failover was decided at %s, before the old postmaster was gone (%s)", decided.Format("15:04:05.000"), goneAt.Format("15:04:05.000"))
	}
	s.assertHas(np, acked)
	s.probe.check(t)
}

// TestFailoverPostgresCrash (scenario 3): only Postgres dies on the primary.
// With restart_timeout 0 the sidecar releases the lease at once and the
// leader fails over without waiting for expiry; with the default it
// restarts Postgres in place and nobody is promoted.
func TestFailoverPostgresCrash(t *testing.T) {
	t.Run("release and fail over", func(t *testing.T) {
		s := startWorkload(t, clusterOpts{standbys: 1, witness: true, tune: func(c *config.Config) {
			if c.Postgres != nil {
				c.Postgres.RestartTimeout = 0
			}
		}})
		acked := s.caughtUpAcks()
		s.lab.KillPostgres(s.node(s.primary))
		killedAt := time.Now()
		np := s.waitNewPrimary(s.primary, 30*time.Second)
		t.Logf("failover to %s %s after Postgres died", np, time.Since(killedAt).Round(10*time.Millisecond))
		rel := s.events(np, "lease_release")
		if len(rel) != 1 || !strings.Contains(rel[0].Details, "crashed") {
			t.Fatalf("lease_release events: %v", rel)
		}
		fo := s.events(np, "failover")
		if len(fo) != 1 || !strings.Contains(fo[0].Details, "released its lease") {
			t.Fatalf("failover events: %v", fo)
		}
		s.assertHas(np, acked)
		s.probe.check(t)
	})
	t.Run("restart in place", func(t *testing.T) {
		s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
		pm := s.node(s.primary).PostmasterPID()
		s.lab.KillPostgres(s.node(s.primary))
		eventually(t, 20*time.Second, "Postgres restarted in place", func() string {
			n := s.node(s.primary).PostmasterPID()
			if n == 0 || n == pm {
				return "not restarted"
			}
			v, err := s.show("")
			if err != nil {
				return err.Error()
			}
			for _, row := range v.Nodes {
				if row.Name == s.primary && row.Postgres.GetRunning() && !row.Postgres.GetInRecovery() {
					return ""
				}
			}
			return "not running as primary"
		})
		time.Sleep(6 * time.Second) // longer than the lease: no failover follows
		s.assertTerm("witness", 1)
		if ev := s.events("witness", "failover"); len(ev) != 0 {
			t.Fatalf("failover after a restart in place: %v", ev)
		}
		restarted := func(n int) {
			t.Helper()
			eventually(t, 20*time.Second, fmt.Sprintf("%d postgres_restart event(s) of %s", n, s.primary), func() string {
				ev := s.events("witness", fsm.EventPostgresRestart)
				if len(ev) != n {
					return fmt.Sprintf("%d: %v", len(ev), ev)
				}
				if last := ev[len(ev)-1]; last.NodeName != s.primary || !strings.Contains(last.Details, "restarted Postgres in place as primary") {
					t.Fatalf("postgres_restart event: %v", last)
				}
				return ""
			})
		}
		restarted(1)
		// pg_ctl stop behind the sidecar's back: restarted in place too,
		// and recorded.
		pm = s.node(s.primary).PostmasterPID()
		args := []string{filepath.Join(pgBinDir, "pg_ctl"), "stop", "-m", "fast", "-D", s.node(s.primary).Config.Postgres.DataDir}
		cmd := exec.Command(args[0], args[1:]...)
		if os.Geteuid() == 0 {
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pg_ctl stop: %v\n%s", err, out)
		}
		eventually(t, 20*time.Second, "Postgres restarted after pg_ctl stop", func() string {
			if n := s.node(s.primary).PostmasterPID(); n == 0 || n == pm {
				return "not restarted"
			}
			return ""
		})
		restarted(2)
		s.assertTerm("witness", 1)
		order := s.probe.check(t)
		if len(order) != 1 || order[0] != s.primary {
			t.Fatalf("writable nodes %v, want only %s", order, s.primary)
		}
	})
}

// TestStandbyDeathNoFailover (scenario 4): a standby dies: no failover; it
// rejoins streaming when restarted.
func TestStandbyDeathNoFailover(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true})
	victim := s.standbys()[0]
	s.lab.KillHost(s.node(victim))
	time.Sleep(8 * time.Second) // twice the lease
	s.assertTerm("witness", 1)
	if ev := s.events("witness", "failover"); len(ev) != 0 {
		t.Fatalf("a failover after a standby died: %v", ev)
	}
	s.start(victim)
	s.followsOn(victim, s.primary, 1, 60*time.Second)
	s.assertHas(victim, s.caughtUpAcks())
	order := s.probe.check(t)
	if len(order) != 1 {
		t.Fatalf("writable nodes %v, want only %s", order, s.primary)
	}
}

// TestFailoverLeaderKilledMidway (scenario 6): the Raft leader sits on the
// witness (the primary's sidecar hands leadership away); the primary's host
// dies and, while the failover is under way, so does the witness. A new
// leader finishes the failover: one promotion, one term increment.
func TestFailoverLeaderKilledMidway(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 3, witness: true})
	eventually(t, 40*time.Second, "the raft leader on the witness", func() string {
		v, err := s.show("witness")
		if err != nil {
			return err.Error()
		}
		if v.RaftLeader != "witness" {
			return "leader is " + v.RaftLeader
		}
		return ""
	})
	acked := s.caughtUpAcks()
	old := s.primary
	s.lab.KillHost(s.node(old))
	time.Sleep(3500 * time.Millisecond) // the lease (4 s) is expiring: the leader is deciding
	s.lab.KillHost(s.node("witness"))
	np := s.waitNewPrimary(old, 40*time.Second)
	s.assertTerm(np, 2)
	if ev := s.events(np, "failover"); len(ev) != 1 {
		t.Fatalf("%d failover decisions, want exactly 1: %v", len(ev), ev)
	}
	// np is writable before its standby_promote event is committed: the
	// witness, the Raft leader, died a moment after the decision.
	if ev := s.awaitEvents(np, "standby_promote", 20*time.Second); len(ev) != 1 {
		t.Fatalf("%d promotions, want exactly 1: %v", len(ev), ev)
	}
	s.assertHas(np, acked)
	order := s.probe.check(t)
	if len(order) != 2 || order[1] != np {
		t.Fatalf("writable nodes %v", order)
	}
	// Nothing more happens once the witness is back.
	s.start("witness")
	time.Sleep(5 * time.Second)
	s.assertTerm("witness", 2)
}

// TestNeverPromoted (scenario 7, automatic mode): a standby with priority 0
// and one tagged nofailover are never promoted, not even by hand.
func TestNeverPromoted(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, tune: func(c *config.Config) {
		switch c.Name {
		case "pg2":
			c.Priority = 0
		case "pg3":
			c.Tags = []string{"nofailover"}
		}
	}})
	s.lab.KillHost(s.node(s.primary))
	eventually(t, 20*time.Second, "a failover_blocked event", func() string {
		if len(s.events("witness", "failover_blocked")) == 0 {
			return "none yet"
		}
		return ""
	})
	time.Sleep(5 * time.Second)
	s.assertTerm("witness", 1)
	blocked := s.events("witness", "failover_blocked")
	if !strings.Contains(blocked[0].Details, "priority 0") || !strings.Contains(blocked[0].Details, "nofailover") {
		t.Fatalf("failover_blocked does not say why: %s", blocked[0].Details)
	}
	for _, tc := range []struct{ to, why string }{{"pg2", "priority 0"}, {"pg3", "nofailover"}} {
		_, errOut, code := s.cli("failover", "--to", tc.to, "-c", s.node("witness").ConfigPath)
		if code != 1 || !strings.Contains(errOut, tc.why) {
			t.Errorf("failover --to %s: exit %d, %q; want a refusal naming %q", tc.to, code, errOut, tc.why)
		}
	}
	s.assertTerm("witness", 1)
	if order := s.probe.check(t); len(order) != 1 {
		t.Fatalf("writable nodes %v", order)
	}
}

// TestManualFailover (scenario 7, manual mode): the leader only records that
// the primary failed; `hasidecar failover --to NAME` promotes, and is
// refused while the primary still holds its lease.
func TestManualFailover(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true, tune: func(c *config.Config) {
		c.Failover = config.FailoverManual
	}})
	// With only -c: the witness's config names the operator certificate.
	addr := s.node("witness").ConfigPath
	_, errOut, code := s.cli("failover", "--to", "pg2", "-c", addr)
	if code != 1 || !strings.Contains(errOut, "still holds its lease") {
		t.Fatalf("failover while the primary lives: exit %d, %q", code, errOut)
	}
	acked := s.caughtUpAcks()
	s.lab.KillHost(s.node(s.primary))
	eventually(t, 20*time.Second, "a failover_pending event", func() string {
		if len(s.events("witness", "failover_pending")) == 0 {
			return "none yet"
		}
		return ""
	})
	time.Sleep(3 * time.Second)
	s.assertTerm("witness", 1)
	out, errOut, code := s.cli("failover", "--to", "pg2", "-c", addr)
	if code != 0 {
		t.Fatalf("failover --to pg2: exit %d: %s", code, errOut)
	}
	t.Logf("hasidecar failover --to pg2:\n%s", out)
	np := s.waitNewPrimary(s.primary, 20*time.Second)
	if np != "pg2" {
		t.Fatalf("new primary %s", np)
	}
	s.assertTerm("witness", 2)
	s.assertHas("pg2", acked)
	s.probe.check(t)
}

func (c *cluster) clusterClient(addr string) pb.ClusterServiceClient {
	t := c.t
	t.Helper()
	conn, err := c.lab.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewClusterServiceClient(conn)
}

func processAlive(pid int) bool {
	return lab.Alive(pid)
}

// TestFrozenSidecar: the primary's sidecar is frozen (SIGSTOP) and cannot
// fence; its guard process kills Postgres before the lease runs out, a
// standby is promoted, and the thawed sidecar obeys the FSM and rejoins.
func TestFrozenSidecar(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
	acked := s.caughtUpAcks()
	old := s.node(s.primary)
	pm, sidecar := old.PostmasterPID(), old.PID()
	if err := syscall.Kill(sidecar, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozenAt := time.Now()
	thawed := false
	defer func() {
		if !thawed {
			_ = syscall.Kill(sidecar, syscall.SIGCONT)
		}
	}()
	eventually(t, 6*time.Second, "the frozen primary's Postgres killed by its guard", func() string {
		if processAlive(pm) {
			return "postmaster alive"
		}
		return ""
	})
	t.Logf("postmaster gone %s after its sidecar froze (lease 4 s)", time.Since(frozenAt).Round(10*time.Millisecond))
	np := s.waitNewPrimary(s.primary, 30*time.Second)
	s.assertHas(np, acked)
	if err := syscall.Kill(sidecar, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawed = true
	s.followsOn(s.primary, np, 2, 60*time.Second)
	if !s.logContains(s.primary, "pgguard: the write deadline passed") {
		t.Error("the guard did not say why it killed Postgres")
	}
	s.probe.check(t)
}
