package pgctl

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

// Environment of the Pdeathsig helper process (see TestPdeathsig).
const (
	envChild     = "PGCTL_CHILD"
	envChildData = "PGCTL_CHILD_DATA"
	envChildPort = "PGCTL_CHILD_PORT"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		runChild()
		return
	}
	code := m.Run()
	if templateDir != "" {
		os.RemoveAll(templateDir)
	}
	os.Exit(code)
}

// runChild starts Postgres through a Controller, prints its pid and blocks
// until it is killed.
func runChild() {
	base := os.Getenv(envChildData)
	port, _ := strconv.Atoi(os.Getenv(envChildPort))
	c, err := New(instanceOptions(base, port, hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info})))
	if err == nil {
		err = c.Start(context.Background())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	fmt.Printf("PID %d\n", c.PID())
	<-c.Exited()
	os.Exit(3)
}

func needPG(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBinDir, "pg_ctl")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL 15 binaries missing (%v) and CI=true", err)
		}
		t.Skipf("PostgreSQL 15 binaries not installed: %v", err)
	}
}

// baseDir is a fresh directory the postgres user can traverse
// (t.TempDir creates 0700 directories).
func baseDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func instanceOptions(base string, port int, log hclog.Logger) Options {
	return Options{
		BinDir:          pgBinDir,
		DataDir:         filepath.Join(base, "data"),
		SocketDir:       filepath.Join(base, "run"),
		LogFile:         filepath.Join(base, "postgres.log"),
		Port:            port,
		ListenAddresses: "127.0.0.1",
		Logger:          log,
		StopTimeout:     10 * time.Second,
		StartTimeout:    30 * time.Second,
		WALKeepSize:     64 << 20,
	}
}

// testLogger writes to t.Log while the test runs and drops lines after.
func testLogger(t *testing.T, name string) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	level := hclog.Info
	if os.Getenv("PGCTL_DEBUG") != "" {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: w, Level: level, DisableTime: true})
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done.Load() {
		w.t.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

// newInstance makes a Controller for base/<name> (no data directory yet)
// whose Postgres is stopped (and killed if needed) when the test ends.
func newInstance(t *testing.T, base, name string) *Controller {
	t.Helper()
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := New(instanceOptions(dir, freePort(t), testLogger(t, name)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx, StopImmediate); err != nil {
			t.Logf("cleanup stop %s: %v", name, err)
			c.Kill()
		}
	})
	return c
}

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
)

// fromTemplate gives c a copy of a cluster made once per test run.
func fromTemplate(t *testing.T, c *Controller) {
	t.Helper()
	templateOnce.Do(func() {
		templateDir, templateErr = os.MkdirTemp("", "pgctl-template-")
		if templateErr != nil {
			return
		}
		if templateErr = os.Chmod(templateDir, 0o755); templateErr != nil {
			return
		}
		var tc *Controller
		tc, templateErr = New(instanceOptions(templateDir, 5432, hclog.NewNullLogger()))
		if templateErr == nil {
			templateErr = tc.InitDB(context.Background(), InitOptions{NoSync: true})
		}
	})
	if templateErr != nil {
		t.Fatalf("template cluster: %v", templateErr)
	}
	out, err := exec.Command("cp", "-a", filepath.Join(templateDir, "data"), c.opts.DataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("copying template: %v: %s", err, out)
	}
	configure(t, c)
}

// configure writes the managed config and pg_hba.conf as a node would.
func configure(t *testing.T, c *Controller) {
	t.Helper()
	ctx := context.Background()
	s := ManagedSettings(c.Options())
	s["fsync"] = "off"
	s["shared_buffers"] = "16MB"
	s["max_connections"] = "30"
	if _, err := c.WriteManagedConfig(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteHBA(ctx, HBAConfig{ReplicationUser: "replicator"}); err != nil {
		t.Fatal(err)
	}
}

func mustStart(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it is true or timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(timeout)
	var last string
	for {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
