package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
)

// TestLifecycle: a primary, two standbys and a witness come up from empty
// directories through the sidecars alone; rows replicate; the standbys
// stream through their slots; cluster show --json tells roles, upstreams,
// timelines and lag; a restarted standby sidecar keeps streaming without a
// new clone; a data directory of another cluster is refused and left as it
// was.
func TestLifecycle(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 3, witness: true})
	// pg4 is kept back for the foreign-data-directory case below.
	c.start("pg1", "pg2", "pg3", "witness")
	waitMembers(t, c, []string{"pg1", "pg2", "pg3", "witness"})

	t.Run("row written on the primary is readable on both standbys", func(t *testing.T) {
		c.exec("pg1", "CREATE TABLE life (id int PRIMARY KEY, note text)")
		c.exec("pg1", "INSERT INTO life VALUES (1, 'one'), (2, 'two')")
		for _, s := range []string{"pg2", "pg3"} {
			eventually(t, 10*time.Second, s+" reads the rows", func() string {
				n, err := c.queryInt(s, "SELECT count(*) FROM life")
				if err != nil {
					return err.Error()
				}
				if n != 2 {
					return fmt.Sprintf("%d rows", n)
				}
				return ""
			})
		}
	})

	t.Run("a second agent on a running node's state_dir exits at once, naming it", func(t *testing.T) {
		n := c.node("pg2")
		running := n.PID()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		out, err := exec.CommandContext(ctx, binPath, "agent", "-c", n.ConfigPath).CombinedOutput()
		took := time.Since(start)
		t.Logf("the second agent exited after %s: %v", took.Round(time.Millisecond), err)
		if ctx.Err() != nil {
			t.Fatalf("the second agent was still running after 30 s:\n%s", out)
		}
		want := fmt.Sprintf("another hasidecar agent (pid %d) is already running with state_dir %s", running, n.Config.StateDir)
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("second agent: %v, want a failure saying %q:\n%s", err, want, out)
		}
		if n.PID() != running {
			t.Fatalf("pg2's agent %d is no longer running (now %d)", running, n.PID())
		}
	})

	t.Run("standbys stream through their slots", func(t *testing.T) {
		for _, s := range []string{"pg2", "pg3"} {
			n, err := c.queryInt("pg1", `SELECT count(*) FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
				WHERE r.application_name = $1 AND r.state = 'streaming' AND s.slot_name = $2 AND s.slot_type = 'physical'`, s, "hasidecar_"+s)
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("pg_stat_replication on pg1: %s is not streaming through slot hasidecar_%s", s, s)
			}
		}
		// Exactly one slot per registered standby (pg4 is registered only once it joins).
		n, err := c.queryInt("pg1", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'hasidecar_%'")
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("%d hasidecar slots on the primary, want 2", n)
		}
	})

	t.Run("cluster show json has roles upstreams timelines and lag", func(t *testing.T) {
		v, err := c.showJSON("pg3")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][2]string{"pg1": {"primary", ""}, "pg2": {"standby", "pg1"}, "pg3": {"standby", "pg1"}, "witness": {"witness", ""}}
		if len(v.Nodes) != len(want) {
			t.Fatalf("%d nodes in cluster show, want %d", len(v.Nodes), len(want))
		}
		for _, n := range v.Nodes {
			w := want[n.Name]
			if n.Role != w[0] || n.Upstream != w[1] {
				t.Errorf("%s: role %q upstream %q, want %q %q", n.Name, n.Role, n.Upstream, w[0], w[1])
			}
			if n.Status != "running" {
				t.Errorf("%s: status %q", n.Name, n.Status)
			}
			if n.Kind == "data" {
				if n.Timeline == nil || *n.Timeline != 1 {
					t.Errorf("%s: timeline %v, want 1", n.Name, n.Timeline)
				}
				if n.LagBytes == nil || *n.LagBytes < 0 {
					t.Errorf("%s: lag_bytes %v, want a number", n.Name, n.LagBytes)
				}
				if !strings.Contains(n.Conninfo, fmt.Sprintf("port=%d", c.node(n.Name).PGPort)) {
					t.Errorf("%s: conninfo %q lacks its port", n.Name, n.Conninfo)
				}
			} else if n.Timeline != nil || n.LagBytes != nil {
				t.Errorf("witness has a timeline or lag: %v %v", n.Timeline, n.LagBytes)
			}
		}
	})

	t.Run("restarted standby sidecar keeps streaming without a new clone", func(t *testing.T) {
		pg2 := c.node("pg2")
		if err := c.lab.Stop(pg2, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		c.start("pg2")
		c.exec("pg1", "INSERT INTO life VALUES (3, 'after restart')")
		eventually(t, 30*time.Second, "pg2 streaming again with the new row", func() string {
			n, err := c.queryInt("pg2", "SELECT count(*) FROM life")
			if err != nil {
				return err.Error()
			}
			if n != 3 {
				return fmt.Sprintf("%d rows", n)
			}
			m, err := c.queryInt("pg1", "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg2' AND state = 'streaming'")
			if err != nil || m != 1 {
				return "not streaming"
			}
			return ""
		})
		b, _ := os.ReadFile(pg2.LogPath)
		if k := bytes.Count(b, []byte("clone finished")); k != 1 {
			t.Errorf("pg2 cloned %d times, want once", k)
		}
	})

	t.Run("dry run says what the agent would do", func(t *testing.T) {
		out, errOut, code := c.cli("agent", "--dry-run", "-c", c.node("pg4").ConfigPath)
		if code != 0 || !strings.Contains(out, "would: clone from pg1") {
			t.Fatalf("dry run of a fresh node: exit %d\n%s%s", code, out, errOut)
		}
		if _, err := os.Stat(c.node("pg4").Config.Postgres.DataDir); !os.IsNotExist(err) {
			t.Fatal("the dry run created the data directory")
		}
		out, _, code = c.cli("agent", "--dry-run", "-c", c.node("pg2").ConfigPath)
		if code != 0 || !strings.Contains(out, "would: follow pg1") {
			t.Fatalf("dry run of a standby: exit %d\n%s", code, out)
		}
	})

	t.Run("another node's live data directory is refused before joining", func(t *testing.T) {
		pg3, pg4 := c.node("pg3"), c.node("pg4")
		pm := pg3.PostmasterPID()
		if pm == 0 {
			t.Fatal("pg3's Postgres is not running")
		}
		// pg4's config with pg3's data directory (its own state_dir).
		b, err := os.ReadFile(pg4.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		own := pg4.Config.Postgres.DataDir
		if !strings.Contains(string(b), "data_dir: "+own+"\n") {
			t.Fatalf("no data_dir: %s in %s", own, pg4.ConfigPath)
		}
		cfgPath := filepath.Join(t.TempDir(), "pg4-shared.yaml")
		if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(b), "data_dir: "+own+"\n", "data_dir: "+pg3.Config.Postgres.DataDir+"\n", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("is in use by a running postmaster (pid %d) that this agent did not start", pm)
		if out, errOut, code := c.cli("agent", "--dry-run", "-c", cfgPath); code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("dry run on pg3's live data directory: exit %d, want 1 and %q\n%s%s", code, want, out, errOut)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binPath, "agent", "-c", cfgPath).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("the agent on pg3's live data directory: %v, want a refusal saying %q:\n%s", err, want, out)
		}
		// Never a member: not registered, never in a Raft configuration
		// change, and pg3's Postgres untouched.
		v, err := c.show("")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range v.Nodes {
			if n.Name == "pg4" {
				t.Fatal("pg4 was registered on pg3's data directory")
			}
		}
		if len(v.UnregisteredRaftServers) > 0 {
			t.Fatalf("Raft members with no node row: %v", v.UnregisteredRaftServers)
		}
		for _, n := range []string{"pg1", "pg2", "pg3", "witness"} {
			if c.logContains(n, "server-id=pg4") || c.logContains(n, "node joined: node=pg4") {
				t.Fatalf("%s's log shows pg4 in a Raft configuration change", n)
			}
		}
		if got := pg3.PostmasterPID(); got != pm {
			t.Fatalf("pg3's postmaster %d is gone (now %d)", pm, got)
		}
	})

	t.Run("data directory of another cluster is refused and untouched", func(t *testing.T) {
		pg4 := c.node("pg4")
		data := pg4.Config.Postgres.DataDir
		initdbAsPostgres(t, data)
		if out, errOut, code := c.cli("agent", "--dry-run", "-c", pg4.ConfigPath); code != 1 || !strings.Contains(errOut, "belongs to another cluster") {
			t.Fatalf("dry run with a foreign data directory: exit %d\n%s%s", code, out, errOut)
		}
		before := dirDigest(t, data)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binPath, "agent", "-c", pg4.ConfigPath).CombinedOutput()
		if err == nil {
			t.Fatalf("the agent accepted a foreign data directory:\n%s", out)
		}
		if !strings.Contains(string(out), "belongs to another cluster") || !strings.Contains(string(out), "system identifier") {
			t.Fatalf("the refusal does not say why:\n%s", out)
		}
		if after := dirDigest(t, data); after != before {
			t.Fatal("the foreign data directory was changed")
		}
		v, err := c.show("")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range v.Nodes {
			if n.Name == "pg4" {
				t.Fatal("pg4 was registered despite its foreign data directory")
			}
		}
	})
}

// waitMembers waits until the named members are healthy (the lab's own
// health check expects every configured node).
func waitMembers(t *testing.T, c *cluster, names []string) {
	t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	eventually(t, 90*time.Second, "members healthy", func() string {
		v, err := c.show("")
		if err != nil {
			return err.Error()
		}
		seen := 0
		for _, n := range v.Nodes {
			if !want[n.Name] {
				continue
			}
			if n.Status != "running" {
				return n.Name + " " + n.Status
			}
			if n.Postgres != nil && n.Postgres.InRecovery && n.Postgres.WalReceiverStatus != "streaming" {
				return n.Name + " not streaming"
			}
			seen++
		}
		if seen != len(names) {
			return fmt.Sprintf("%d of %d members", seen, len(names))
		}
		return ""
	})
}

// initdbAsPostgres makes a Postgres data directory of its own (another
// system identifier) as the postgres OS user.
func initdbAsPostgres(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(pgBinDir, "initdb"), "-D", dir, "-U", "postgres", "--no-sync"}
	cmd := exec.Command(args[0], args[1:]...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
}

// dirDigest hashes every file name, size and content under dir.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d %v\n", strings.TrimPrefix(p, dir), info.Size(), info.Mode())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestBadInput: every bad input gives a clear error and deletes nothing.
func TestBadInput(t *testing.T) {
	needPostgres(t)

	// A single bootstrap node with a tweak, run with `agent` until it exits
	// (or for at most wait); returns its combined output.
	runAgent := func(t *testing.T, tune func(*config.Config), prepare func(c *cluster), wait time.Duration) (string, *cluster) {
		c := newCluster(t, clusterOpts{standbys: 0, tune: tune})
		if prepare != nil {
			prepare(c)
		}
		if err := c.lab.Write(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		out, _ := exec.CommandContext(ctx, binPath, "agent", "-c", c.node("pg1").ConfigPath).CombinedOutput()
		return string(out), c
	}

	t.Run("not a postgres data directory", func(t *testing.T) {
		var data string
		out, _ := runAgent(t, nil, func(c *cluster) {
			data = c.node("pg1").Config.Postgres.DataDir
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "precious.txt"), []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 30*time.Second)
		if !strings.Contains(out, "is not a Postgres data directory") || !strings.Contains(out, "nothing was changed") {
			t.Fatalf("unclear error:\n%s", out)
		}
		b, err := os.ReadFile(filepath.Join(data, "precious.txt"))
		if err != nil || string(b) != "keep me" {
			t.Fatalf("the file in the data directory was touched: %v %q", err, b)
		}
	})

	t.Run("postgres port already in use", func(t *testing.T) {
		var ln net.Listener
		out, _ := runAgent(t, nil, func(c *cluster) {
			var err error
			ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", c.node("pg1").PGPort))
			if err != nil {
				t.Fatal(err)
			}
		}, 40*time.Second)
		defer ln.Close()
		if !strings.Contains(out, "already in use") || !strings.Contains(out, "postgres.port") {
			t.Fatalf("unclear error:\n%s", out)
		}
	})

	t.Run("missing bin dir", func(t *testing.T) {
		c := newCluster(t, clusterOpts{standbys: 0})
		cfgPath := c.node("pg1").ConfigPath
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("bin_dir: "+pgBinDir), []byte("bin_dir: /nonexistent/postgresql/bin"), 1)
		if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := c.cli("agent", "-c", cfgPath)
		if code != 1 || !strings.Contains(errOut, "postgres.bin_dir") {
			t.Fatalf("exit %d, unclear error:\n%s", code, errOut)
		}
		if _, err := os.Stat(c.node("pg1").Config.Postgres.DataDir); !os.IsNotExist(err) {
			t.Fatal("a data directory was created despite the config error")
		}
	})

	t.Run("primary unreachable during clone", func(t *testing.T) {
		c := newCluster(t, clusterOpts{standbys: 2, witness: true})
		c.start("pg1", "pg2", "witness")
		waitMembers(t, c, []string{"pg1", "pg2", "witness"})
		// No automatic failover while we look: the primary's host dies and
		// a new node tries to clone from it.
		if _, errOut, code := c.cli("pause", "--addr", c.node("witness").GRPCAddr()); code != 0 {
			t.Fatalf("pause: %s", errOut)
		}
		c.lab.KillHost(c.node("pg1"))
		c.start("pg3")
		pg3 := c.node("pg3")
		eventually(t, 60*time.Second, "pg3's clone attempt fails clearly", func() string {
			out, _, _ := c.cli("node", "status", "--json", "--addr", pg3.GRPCAddr())
			if strings.Contains(out, "clone from pg1") {
				return ""
			}
			return "reconciler: " + out
		})
		entries, err := os.ReadDir(pg3.Config.Postgres.DataDir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("a failed clone left %d files in the data directory", len(entries))
		}
		// Once failover is allowed again, pg2 takes over and pg3 clones
		// from it.
		if _, errOut, code := c.cli("unpause", "--addr", c.node("witness").GRPCAddr()); code != 0 {
			t.Fatalf("unpause: %s", errOut)
		}
		waitMembers(t, c, []string{"pg2", "pg3", "witness"})
		v, _ := c.show("")
		if p := primaryName(v); p != "pg2" {
			t.Fatalf("primary %q, want pg2", p)
		}
	})
}

// TestLabDownFindsAgents: an agent started by hand with a lab node's config
// (as the lab's hints say, not through the lab) is one lab status reports
// and lab down --purge stops: the lab finds agents by their state_dir
// locks, not only by the pid files of those it started.
func TestLabDownFindsAgents(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 0})
	c.start()
	c.waitHealthy(60 * time.Second)
	n := c.node("pg1")
	if err := c.lab.Stop(n, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "agent", "-c", n.ConfigPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		c.lab.KillHost(n)
	})
	eventually(t, 30*time.Second, "the hand-started agent holds pg1's state_dir", func() string {
		if got := n.PID(); got != cmd.Process.Pid {
			return fmt.Sprintf("lab sees pid %d, the agent is %d", got, cmd.Process.Pid)
		}
		return ""
	})
	out, errOut, code := c.cliPlain("lab", "status", "--json", "--dir", c.lab.Spec.Dir)
	if code != 0 {
		t.Fatalf("lab status: exit %d\n%s%s", code, out, errOut)
	}
	if want := fmt.Sprintf(`"sidecar_pid": %d`, cmd.Process.Pid); !strings.Contains(out, want) {
		t.Fatalf("lab status does not report the hand-started agent (%s):\n%s", want, out)
	}
	out, errOut, code = c.cliPlain("lab", "down", "--purge", "--dir", c.lab.Spec.Dir)
	if code != 0 {
		t.Fatalf("lab down: exit %d\n%s%s", code, out, errOut)
	}
	select {
	case err := <-done:
		t.Logf("the hand-started agent exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("lab down --purge left the hand-started agent running")
	}
	if pm := n.PostmasterPID(); pm != 0 {
		t.Fatalf("Postgres %d still runs after lab down", pm)
	}
}
