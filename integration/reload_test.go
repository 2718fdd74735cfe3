package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/pki"
)

// TestReload (issue 13): SIGHUP makes a sidecar read its YAML again. A
// standby's file gets a new priority, tags, log level, a postgres parameter
// and a key that cannot change live (location): cluster show --json shows
// the new priority and tags within seconds, Postgres runs the parameter,
// the log has a debug line and a warning naming location; a file that no
// longer parses changes nothing; `hasidecar reload --node` reloads the file
// and Postgres (SHOW has the new value when it returns); without an
// operator certificate it is refused.
func TestReload(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
	name := s.standbys()[0]
	n := s.node(name)
	addr := s.node("witness").GRPCAddr()
	write := func(edit func(c *config.Config)) {
		t.Helper()
		b, err := os.ReadFile(n.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.Parse(b, n.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		edit(c)
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.ConfigPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hup := func() time.Time {
		t.Helper()
		at := time.Now()
		if err := syscall.Kill(n.PID(), syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %s: %v", name, err)
		}
		return at
	}
	logSize := func() int64 {
		fi, err := os.Stat(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	logSince := func(off int64) string {
		b, err := os.ReadFile(n.LogPath)
		if err != nil || int64(len(b)) < off {
			return ""
		}
		return string(b[off:])
	}
	showNode := func() (int32, []string, error) {
		v, err := s.showJSON("witness")
		if err != nil {
			return 0, nil, err
		}
		for _, row := range v.Nodes {
			if row.Name == name {
				return row.Priority, row.Tags, nil
			}
		}
		return 0, nil, fmt.Errorf("%s not in cluster show", name)
	}
	prio0, _, err := showNode()
	if err != nil {
		t.Fatal(err)
	}

	// 1. SIGHUP: live keys applied, location kept with a warning.
	write(func(c *config.Config) {
		c.Priority, c.Tags, c.LogLevel = 42, []string{"noloadbalance"}, "debug"
		c.Location = "moved"
		c.Postgres.Parameters = map[string]string{"work_mem": "7MB"}
	})
	off := logSize()
	at := hup()
	eventually(t, 10*time.Second, "cluster show --json with the new priority and tags", func() string {
		p, tags, err := showNode()
		if err != nil {
			return err.Error()
		}
		if p != 42 || !slices.Equal(tags, []string{"noloadbalance"}) {
			return fmt.Sprintf("priority %d tags %v", p, tags)
		}
		return ""
	})
	t.Logf("priority and tags in cluster show %.2fs after the SIGHUP (priority was %d)", time.Since(at).Seconds(), prio0)
	eventually(t, 10*time.Second, "work_mem 7MB on "+name, func() string {
		v, err := s.queryString(name, "SHOW work_mem")
		if err != nil || v != "7MB" {
			return fmt.Sprintf("work_mem %q (%v)", v, err)
		}
		return ""
	})
	t.Logf("work_mem 7MB in SHOW %.2fs after the SIGHUP", time.Since(at).Seconds())
	logged := logSince(off)
	for _, want := range []string{"config reloaded (SIGHUP)", "location changed in the file, but only a restart of the sidecar applies it", "[DEBUG]"} {
		if !strings.Contains(logged, want) {
			t.Fatalf("%s's log after the SIGHUP lacks %q:\n%s", name, want, logged)
		}
	}
	if v, err := s.showJSON("witness"); err == nil {
		for _, row := range v.Nodes {
			if row.Name == name && row.Location != "lab" {
				t.Fatalf("location %q in cluster show: a restart-only key was applied live", row.Location)
			}
		}
	}

	// 2. A file that does not parse: nothing changes, an error is logged.
	good, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ConfigPath, append(append([]byte{}, good...), []byte("priority: banana\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	off = logSize()
	hup()
	eventually(t, 10*time.Second, "the reload's error in the log", func() string {
		if !strings.Contains(logSince(off), "the file does not load; nothing was changed") {
			return "not logged yet"
		}
		return ""
	})
	if p, _, err := showNode(); err != nil || p != 42 {
		t.Fatalf("after a bad file: priority %d (%v), want 42 kept", p, err)
	}
	out, errOut, code := s.cli("reload", "--addr", addr, "--node", name)
	if code == 0 || !strings.Contains(out, "not reloaded, nothing changed") {
		t.Fatalf("reload with a bad file: exit %d: %s %s", code, out, errOut)
	}

	// 3. `hasidecar reload --node`: the file and Postgres, synchronously.
	if err := os.WriteFile(n.ConfigPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	write(func(c *config.Config) { c.Postgres.Parameters = map[string]string{"work_mem": "9MB"} })
	out, errOut, code = s.cli("reload", "--addr", addr, "--node", name, "--json")
	if code != 0 {
		t.Fatalf("reload --node %s: exit %d: %s %s", name, code, out, errOut)
	}
	var res []struct {
		Node             string   `json:"node"`
		Reloaded         []string `json:"reloaded"`
		NeedRestart      []string `json:"need_restart"`
		PostgresReloaded bool     `json:"postgres_reloaded"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("reload --json: %v: %s", err, out)
	}
	if res[0].Node != name || !res[0].PostgresReloaded || !slices.Equal(res[0].Reloaded, []string{"postgres.parameters.work_mem"}) ||
		!slices.Equal(res[0].NeedRestart, []string{"location"}) {
		t.Fatalf("reload --json: %+v", res[0])
	}
	if v, err := s.queryString(name, "SHOW work_mem"); err != nil || v != "9MB" {
		t.Fatalf("work_mem after reload --node: %q (%v), want 9MB at once", v, err)
	}

	// 4. Unknown node: refused, naming the known ones.
	if _, errOut, code := s.cli("reload", "--addr", addr, "--node", "nosuch"); code == 0 || !strings.Contains(errOut, s.primary) {
		t.Fatalf("reload --node nosuch: exit %d: %s", code, errOut)
	}

	// 5. A monitor certificate may not reload.
	dir := s.lab.TLSDir()
	out, errOut, code = s.cliPlain("reload", "--addr", addr, "--node", name, "--tls-ca", filepath.Join(dir, pki.CACertFile),
		"--tls-cert", filepath.Join(dir, pki.CertFile(pki.DefaultMonitor)), "--tls-key", filepath.Join(dir, pki.KeyFile(pki.DefaultMonitor)))
	if code == 0 || !strings.Contains(out+errOut, "may not call ReloadConfig: it needs an operator certificate") {
		t.Fatalf("reload with the monitor certificate: exit %d: %s %s", code, out, errOut)
	}

	s.writer.stop()
	s.assertTerm("witness", 1)
	s.probe.check(t, s.primary)
}

// queryString runs a one-value text query on a node.
func (c *cluster) queryString(name, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, name)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var v string
	err = conn.QueryRow(ctx, sql).Scan(&v)
	return v, err
}
