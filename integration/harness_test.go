// Package integration starts real sidecars (the hasidecar binary, one OS
// process each) beside real PostgreSQL 15 instances on loopback, and checks
// what a user would: roles, replication, failover, fencing.
//
// Outside CI a missing Postgres makes the Postgres tests skip; under CI=true
// it fails them.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/guardcmd"
	"github.com/hasidecar/hasidecar/internal/lab"
	"github.com/hasidecar/hasidecar/internal/showdoc"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

const pgBinDir = "/usr/lib/postgresql/15/bin"

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hasidecar-it-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "hasidecar")
	// The guard binary beside it, where the agent looks for it (as
	// `make build` puts it): the suite runs the guards as installed.
	for _, b := range [][]string{
		{"-o", binPath, "../cmd/hasidecar"},
		{"-ldflags", "-s -w", "-o", filepath.Join(dir, guardcmd.Binary), "../cmd/hasidecar-guard"},
	} {
		build := exec.Command("go", append([]string{"build"}, b...)...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b[len(b)-1]+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// needPostgres skips (or, under CI, fails) a test without Postgres 15.
func needPostgres(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBinDir, "pg_ctl")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL 15 binaries missing at %s (CI=true): install postgresql-15", pgBinDir)
		}
		t.Skipf("PostgreSQL 15 binaries missing at %s", pgBinDir)
	}
}

// cluster is a lab under test: its processes are killed and its logs shown
// (on failure) when the test ends.
type cluster struct {
	t   *testing.T
	lab *lab.Lab
}

type clusterOpts struct {
	standbys int
	witness  bool
	tune     func(*config.Config)
	// netns: every node on a network namespace of its own (partitions).
	netns bool
}

// newCluster lays out a lab in a fresh directory on free ports; nothing is
// started yet.
func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	dir := t.TempDir()
	// The postgres OS user must traverse every parent of its data dir.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	spec := lab.Spec{Dir: filepath.Join(dir, "lab"), Standbys: o.standbys, Witness: o.witness,
		BasePort: freeBase(t), Binary: binPath, Tune: o.tune}
	if o.netns {
		nw, err := lab.NewNet()
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("network namespaces: %v", err)
			}
			t.Skipf("network namespaces: %v", err)
		}
		spec.Net = nw
	}
	l, err := lab.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, lab: l}
	t.Cleanup(func() {
		if err := l.Down(15 * time.Second); err != nil {
			t.Logf("teardown: %v", err)
		}
		if t.Failed() {
			c.dumpLogs()
		}
		if spec.Net != nil {
			if err := spec.Net.Teardown(); err != nil {
				t.Errorf("delete the lab's namespaces: %v", err)
			}
		}
	})
	return c
}

// freeBase is a free block of lab ports (below the ephemeral range).
func freeBase(t *testing.T) int {
	t.Helper()
	base, err := lab.FreeBase()
	if err != nil {
		t.Fatal(err)
	}
	return base
}

func (c *cluster) node(name string) *lab.Node {
	c.t.Helper()
	n := c.lab.Node(name)
	if n == nil {
		c.t.Fatalf("no lab node %q", name)
	}
	return n
}

func (c *cluster) start(names ...string) {
	c.t.Helper()
	if len(names) == 0 {
		for _, n := range c.lab.Nodes {
			names = append(names, n.Name)
		}
	}
	for _, name := range names {
		if err := c.lab.Start(c.node(name)); err != nil {
			c.t.Fatal(err)
		}
	}
}

// waitHealthy waits until every member runs, one primary, all standbys
// streaming.
func (c *cluster) waitHealthy(timeout time.Duration) *pb.ShowResponse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := c.lab.WaitHealthy(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

// eventually polls cond until it returns "" or the timeout passes; the last
// non-empty answer says what was missing.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		if last = cond(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// show asks the named member (or any) for cluster show.
func (c *cluster) show(name string) (*pb.ShowResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if name == "" {
		return c.lab.Show(ctx)
	}
	return c.lab.ShowAt(ctx, c.node(name).GRPCAddr())
}

// cli runs the hasidecar CLI and returns stdout, stderr and the exit code.
// With only --addr it uses the lab's operator certificate (as an operator
// with HASIDECAR_TLS_DIR set would); cliPlain runs it without.
func (c *cluster) cli(args ...string) (string, string, int) {
	c.t.Helper()
	return c.runCLI(true, args...)
}

// cliPlain runs the CLI with no certificate but what its flags name.
func (c *cluster) cliPlain(args ...string) (string, string, int) {
	c.t.Helper()
	return c.runCLI(false, args...)
}

// runCLIEnv is cli with extra environment variables (KEY=VALUE).
func (c *cluster) runCLIEnv(env []string, args ...string) (string, string, int) {
	c.t.Helper()
	return c.runCLIWith(true, env, args...)
}

func (c *cluster) runCLI(operator bool, args ...string) (string, string, int) {
	c.t.Helper()
	return c.runCLIWith(operator, nil, args...)
}

func (c *cluster) runCLIWith(operator bool, env []string, args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	if c.lab.Spec.Net != nil {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.lab.Spec.Net.Namespace("client"), binPath}, args...)...)
	}
	// As an operator would: --addr alone takes the operator certificate
	// from the lab's tls init directory.
	cmd.Env = os.Environ()
	if operator {
		cmd.Env = append(cmd.Env, "HASIDECAR_TLS_DIR="+c.lab.TLSDir())
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run hasidecar %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// showJSON is the document of cluster show --json (internal/showdoc).
type showJSON = showdoc.Doc

// httpGet fetches url within 3 s; a status other than 200 is an error.
func httpGet(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func (c *cluster) showJSON(name string) (*showJSON, error) {
	out, errOut, code := c.cli("cluster", "show", "--json", "--addr", c.node(name).GRPCAddr())
	if code != 0 {
		return nil, fmt.Errorf("cluster show exited %d: %s", code, strings.TrimSpace(errOut))
	}
	var v showJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("cluster show --json: %w: %s", err, out)
	}
	return &v, nil
}

// primaryName is the node the FSM names primary ("" when none).
func primaryName(v *pb.ShowResponse) string {
	for _, n := range v.Nodes {
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			return n.Name
		}
	}
	return ""
}

// dsn connects to one node's Postgres directly.
func (c *cluster) dsn(name string) string {
	n := c.node(name)
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=2 sslmode=disable", n.Host, n.PGPort)
}

func (c *cluster) connect(ctx context.Context, name string) (*pgx.Conn, error) {
	return c.connectDSN(ctx, c.dsn(name))
}

// connectDSN opens a connection, from the client namespace when the lab
// has its own network.
func (c *cluster) connectDSN(ctx context.Context, dsn string) (*pgx.Conn, error) {
	return c.connectWith(ctx, dsn, nil)
}

// connectWith is connectDSN with a last change to the parsed config.
func (c *cluster) connectWith(ctx context.Context, dsn string, tweak func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if tweak != nil {
		tweak(cfg)
	}
	if c.lab.Spec.Net != nil {
		cfg.DialFunc = c.lab.Spec.Net.DialContext // for every host of a multi-host string
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// exec runs SQL on a node and fails the test on error.
func (c *cluster) exec(name, sql string, args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, name)
	if err != nil {
		c.t.Fatalf("connect to %s: %v", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		c.t.Fatalf("%s: %s: %v", name, sql, err)
	}
}

// queryInt runs a one-value query on a node.
func (c *cluster) queryInt(name, sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, name)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var v int64
	err = conn.QueryRow(ctx, sql, args...).Scan(&v)
	return v, err
}

// dumpLogs prints the tail of every sidecar and Postgres log into the test
// output, for a failed test.
func (c *cluster) dumpLogs() {
	for _, n := range c.lab.Nodes {
		for _, p := range []string{n.LogPath, filepath.Join(n.Dir, "postgres.log")} {
			c.t.Logf("==== %s: last lines of %s", n.Name, p)
			for _, line := range lab.Tail(p, 60) {
				c.t.Logf("%s| %s", n.Name, line)
			}
		}
	}
}

// logContains reports whether a node's sidecar log has the text.
func (c *cluster) logContains(name, text string) bool {
	b, err := os.ReadFile(c.node(name).LogPath)
	return err == nil && bytes.Contains(b, []byte(text))
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return itoa(ln.Addr().(*net.TCPAddr).Port)
}

func itoa(i int) string { return fmt.Sprint(i) }
