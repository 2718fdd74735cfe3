package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
)

// TestSwitchover: refusals change nothing; a switchover under a steady
// INSERT load loses no acknowledged write and leaves the old primary
// streaming from the new one on the new timeline, without a rewind; a
// second switchover back works; a target that cannot promote in time gives
// the old primary its role back in a new term.
func TestSwitchover(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, tune: func(c *config.Config) {
		c.MaximumLagOnFailover = 256 << 10
	}})
	// With only -c: the witness's config names the operator certificate.
	addr := s.node("witness").ConfigPath
	refused := func(t *testing.T, args []string, want string) {
		t.Helper()
		before := len(s.events("witness", "switchover_start"))
		_, errOut, code := s.cli(append([]string{"switchover", "-c", addr}, args...)...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("switchover %v: exit %d, %q; want a refusal saying %q", args, code, errOut, want)
		}
		if after := len(s.events("witness", "switchover_start")); after != before {
			t.Fatalf("a refused switchover began one")
		}
		s.assertTerm("witness", 1)
	}

	t.Run("refusals", func(t *testing.T) {
		refused(t, []string{"--to", "nope"}, `no node named "nope"`)
		refused(t, []string{"--to", "witness"}, "is a witness")
		refused(t, []string{"--to", "pg1"}, "already the primary")
		if _, e, code := s.cli("pause", "-c", addr); code != 0 {
			t.Fatal(e)
		}
		refused(t, []string{"--to", "pg2"}, "the cluster is paused")
		if _, e, code := s.cli("unpause", "-c", addr); code != 0 {
			t.Fatal(e)
		}
		// A target that lags beyond maximum_lag_on_failover (its WAL
		// receiver frozen while the primary writes).
		wr := walReceiverPID(t, s.cluster, "pg3")
		if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		s.exec("pg1", "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g")
		refused(t, []string{"--to", "pg3"}, "is lagging")
		if err := syscall.Kill(wr, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		// An unhealthy target: its sidecar is down.
		if err := s.lab.Stop(s.node("pg3"), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		refused(t, []string{"--to", "pg3"}, "is unhealthy")
		s.start("pg3")
		s.followsOn("pg3", "pg1", 1, 60*time.Second)
		// A dry run prints the plan and changes nothing.
		out, errOut, code := s.cli("switchover", "-c", addr, "--to", "pg2", "--dry-run")
		if code != 0 || !strings.Contains(out, "dry run: nothing was changed") || !strings.Contains(out, "without pg_rewind") {
			t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
		}
		s.assertTerm("witness", 1)
	})

	t.Run("there and back under load", func(t *testing.T) {
		for i, step := range []struct{ from, to string }{{"pg1", "pg2"}, {"pg2", "pg1"}} {
			tli := uint32(i + 2)
			start := time.Now()
			out, errOut, code := s.cli("switchover", "-c", addr, "--to", step.to)
			if code != 0 {
				t.Fatalf("switchover to %s: exit %d\n%s%s", step.to, code, out, errOut)
			}
			t.Logf("switchover %s → %s took %s", step.from, step.to, time.Since(start).Round(time.Millisecond))
			s.followsOn(step.from, step.to, tli, 60*time.Second)
			other := "pg3"
			s.followsOn(other, step.to, tli, 60*time.Second)
			if s.logContains(step.from, "rewinding from the primary") {
				t.Fatalf("%s was rewound after a clean switchover", step.from)
			}
		}
		acked := s.writer.ackedIDs()
		s.waitCaughtUp("pg1", "pg2", "pg3")
		s.assertHas("pg1", acked)
		s.assertHas("pg2", acked)
		s.assertTerm("witness", 3)
	})

	t.Run("target too slow: rollback in a new term", func(t *testing.T) {
		// pg3's WAL receiver is frozen: it never receives pg1's shutdown
		// checkpoint, so it cannot be promoted before the deadline.
		wr := walReceiverPID(t, s.cluster, "pg3")
		if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = syscall.Kill(wr, syscall.SIGCONT) }()
		out, errOut, code := s.cli("switchover", "-c", addr, "--to", "pg3", "--timeout", "4s")
		if code != 1 || !strings.Contains(errOut, "rolled back") {
			t.Fatalf("switchover to a stuck target: exit %d\n%s%s", code, out, errOut)
		}
		_ = syscall.Kill(wr, syscall.SIGCONT)
		s.assertTerm("witness", 4)
		eventually(t, 30*time.Second, "pg1 writable again", func() string {
			v, err := s.show("witness")
			if err != nil {
				return err.Error()
			}
			if primaryName(v) != "pg1" {
				return "primary " + primaryName(v)
			}
			for _, n := range v.Nodes {
				if n.Name == "pg1" && n.Postgres.GetRunning() && !n.Postgres.GetInRecovery() {
					return ""
				}
			}
			return "pg1 not running writable"
		})
		s.followsOn("pg2", "pg1", 3, 60*time.Second)
		s.followsOn("pg3", "pg1", 3, 60*time.Second)
	})
	s.writer.stop()
	s.probe.check(t, "pg1", "pg2", "pg1")
}

// walReceiverPID is the pid of a standby's WAL receiver process.
func walReceiverPID(t *testing.T, c *cluster, node string) int {
	t.Helper()
	var pid int64
	eventually(t, 20*time.Second, node+" has a WAL receiver", func() string {
		v, err := c.queryInt(node, "SELECT pid FROM pg_stat_wal_receiver")
		if err != nil {
			return err.Error()
		}
		pid = v
		return ""
	})
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		t.Fatalf("wal receiver %d: %v", pid, err)
	}
	return int(pid)
}
