package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
)

// TestOperatorVerbs: node check's exit codes, cluster matrix/crosscheck,
// node remove, node rejoin after a failover (manual_rejoin), the event
// command, and the monitoring history — repmgr's operator verbs, over gRPC.
func TestOperatorVerbs(t *testing.T) {
	eventsDir := t.TempDir()
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, tune: func(c *config.Config) {
		c.EventCommand = "echo %e %a %s >> " + filepath.Join(eventsDir, c.Name+".log")
		if c.Postgres != nil {
			c.Postgres.ManualRejoin = true
		}
	}})
	// Every verb with only -c, as an operator on a host would: the config
	// names the operator certificate under ctl:.
	w := s.node("witness").ConfigPath
	check := func(args ...string) (string, int) {
		out, _, code := s.cliPlain(append([]string{"node", "check"}, args...)...)
		return out, code
	}

	t.Run("node check exit codes", func(t *testing.T) {
		// Right after a leadership change the new leader may not have
		// the primary's report yet (lag unknown): allow it a moment.
		eventually(t, 10*time.Second, "node check OK for a healthy standby", func() string {
			if out, code := check("-c", s.node("pg2").ConfigPath); code != 0 {
				return out
			}
			return ""
		})
		var rep struct {
			Status   string `json:"status"`
			ExitCode int    `json:"exit_code"`
			Checks   []struct{ Name, Status string }
		}
		out, code := check("-c", s.node("pg1").ConfigPath, "--json")
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Status != "OK" || len(rep.Checks) < 3 {
			t.Fatalf("healthy primary: exit %d, %v\n%s", code, err, out)
		}
		// Lagging: pg3's WAL receiver frozen while the primary writes.
		wr := walReceiverPID(t, s.cluster, "pg3")
		if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		s.exec("pg1", "CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g")
		eventually(t, 15*time.Second, "node check WARNING for the lagging standby", func() string {
			out, code := check("-c", w, "--node", "pg3", "--lag-warning-bytes", "65536")
			if code != 1 || !strings.Contains(out, "lag_bytes: WARNING") {
				return out
			}
			return ""
		})
		_ = syscall.Kill(wr, syscall.SIGCONT)
		// Stopped: its sidecar (and with it its Postgres) is down.
		if err := s.lab.Stop(s.node("pg3"), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "node check CRITICAL for the stopped standby", func() string {
			if out, code := check("-c", w, "--node", "pg3"); code != 2 {
				return out
			}
			return ""
		})
		if out, code := check("-c", s.node("pg3").ConfigPath); code != 3 || !strings.Contains(out, "UNKNOWN") {
			t.Fatalf("unreachable sidecar: exit %d\n%s", code, out)
		}
	})

	t.Run("matrix shows the unreachable node", func(t *testing.T) {
		eventually(t, 15*time.Second, "pg3 unreachable in the matrix", func() string {
			out, errOut, code := s.cliPlain("cluster", "crosscheck", "--json", "-c", w)
			if code != 0 {
				return errOut
			}
			var rows []struct{ Name, Status string }
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				return err.Error()
			}
			for _, r := range rows {
				want := "reachable"
				if r.Name == "pg3" {
					want = "unreachable"
				}
				if r.Status != want {
					return r.Name + " is " + r.Status
				}
			}
			return ""
		})
		out, _, code := s.cliPlain("cluster", "matrix", "-c", w)
		if code != 0 || !strings.Contains(out, "pg3") || !strings.Contains(out, "x") {
			t.Fatalf("cluster matrix: exit %d\n%s", code, out)
		}
		t.Logf("cluster matrix:\n%s", out)
	})

	t.Run("node remove", func(t *testing.T) {
		if _, errOut, code := s.cliPlain("node", "remove", "--name", "pg1", "-c", w); code != 1 || !strings.Contains(errOut, "is the primary") {
			t.Fatalf("removing the primary: exit %d %q", code, errOut)
		}
		if _, errOut, code := s.cliPlain("node", "remove", "--name", "pg3", "-c", w); code != 0 {
			t.Fatalf("remove pg3: %s", errOut)
		}
		eventually(t, 15*time.Second, "pg3's slot dropped", func() string {
			n, err := s.queryInt("pg1", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'hasidecar_pg3'")
			if err != nil {
				return err.Error()
			}
			if n != 0 {
				return "slot still there"
			}
			return ""
		})
		v, err := s.showJSON("witness")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range v.Nodes {
			if n.Name == "pg3" {
				t.Fatal("pg3 still listed")
			}
		}
		if ev := s.events("witness", "standby_unregister"); len(ev) != 1 {
			t.Fatalf("standby_unregister events: %v", ev)
		}
	})

	t.Run("node rejoin after a failover", func(t *testing.T) {
		acked := s.caughtUpAcksOf("pg1", "pg2")
		s.lab.KillHost(s.node("pg1"))
		np := s.waitNewPrimary("pg1", 30*time.Second)
		if np != "pg2" {
			t.Fatalf("new primary %s", np)
		}
		s.start("pg1")
		pg1 := s.node("pg1").ConfigPath
		eventually(t, 30*time.Second, "pg1 waiting for node rejoin", func() string {
			out, errOut, _ := s.cliPlain("node", "status", "--json", "-c", pg1)
			if strings.Contains(out, "waiting for `hasidecar node rejoin`") {
				return ""
			}
			return "status: " + out + errOut
		})
		out, errOut, code := s.cliPlain("node", "rejoin", "--dry-run", "-c", pg1)
		if code != 0 || !strings.Contains(out, "would run pg_rewind from pg2") {
			t.Fatalf("rejoin --dry-run: exit %d\n%s%s", code, out, errOut)
		}
		out, errOut, code = s.cliPlain("node", "rejoin", "-c", pg1)
		if code != 0 || !strings.Contains(out, "pg_rewind from pg2: done") {
			t.Fatalf("rejoin: exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("node rejoin:\n%s", out)
		s.followsOn("pg1", "pg2", 2, 30*time.Second)
		s.assertHas("pg1", acked)
		if ev := s.events("pg2", "node_rejoin"); len(ev) == 0 {
			t.Fatal("no node_rejoin event")
		}
	})

	t.Run("event command", func(t *testing.T) {
		eventually(t, 10*time.Second, "pg2's event command saw its promotion", func() string {
			b, _ := os.ReadFile(filepath.Join(eventsDir, "pg2.log"))
			if strings.Contains(string(b), "standby_promote pg2 1") {
				return ""
			}
			return string(b)
		})
	})

	t.Run("monitoring history", func(t *testing.T) {
		// Every sidecar's own samples, gathered by the CLI from each (the
		// lab samples every second).
		v, err := s.show("")
		if err != nil {
			t.Fatal(err)
		}
		var members []string
		for _, n := range v.Nodes {
			members = append(members, n.Name)
		}
		eventually(t, 20*time.Second, "history from every member", func() string {
			out, errOut, code := s.cliPlain("cluster", "history", "--json", "--since", "1m", "--limit", "0", "-c", w)
			var samples []struct {
				Name      string `json:"name"`
				Timestamp string `json:"timestamp"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &samples) != nil {
				return fmt.Sprintf("cluster history: exit %d %s\n%s", code, errOut, out)
			}
			seen := map[string]bool{}
			for i, sm := range samples {
				seen[sm.Name] = true
				if i > 0 && sm.Timestamp > samples[i-1].Timestamp {
					t.Fatalf("cluster history is not newest first: %s after %s", sm.Timestamp, samples[i-1].Timestamp)
				}
			}
			for _, m := range members {
				if !seen[m] {
					return "no sample of " + m
				}
			}
			return ""
		})
		out, errOut, code := s.cliPlain("cluster", "history", "--node", "pg2", "--limit", "3", "-c", w)
		if code != 0 || strings.Count(out, " pg2 ") != 3 || strings.Contains(out, " pg1 ") {
			t.Fatalf("cluster history --node pg2 --limit 3: exit %d %s\n%s", code, errOut, out)
		}
		out, errOut, code = s.cliPlain("cluster", "cleanup", "--keep-history", "0s", "-c", w)
		if code != 0 {
			t.Fatalf("cluster cleanup: exit %d %s %s", code, out, errOut)
		}
		for _, m := range members {
			if !strings.Contains(out, m+": removed ") || strings.Contains(out, m+": removed 0 ") {
				t.Errorf("cluster cleanup did not trim %s's history:\n%s", m, out)
			}
		}
	})
	s.probe.check(t)
}

// caughtUpAcksOf: the writes acknowledged so far, once the standbys replayed
// them.
func (s *started) caughtUpAcksOf(primary string, standbys ...string) []int {
	ids := s.writer.ackedIDs()
	s.waitCaughtUp(primary, standbys...)
	return ids
}
