package pgctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestLifecycle(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	c := newInstance(t, base, "n1")

	if st, err := c.InspectDataDir(ctx); err != nil || st != DataDirMissing {
		t.Fatalf("InspectDataDir before initdb = %v, %v", st, err)
	}
	if err := c.InitDB(ctx, InitOptions{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.InspectDataDir(ctx); err != nil || st != DataDirValid {
		t.Fatalf("InspectDataDir after initdb = %v, %v", st, err)
	}
	if isFile(c.markerPath()) {
		t.Fatal("initdb left its in-progress marker")
	}
	if err := c.InitDB(ctx, InitOptions{}); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Fatalf("second InitDB: %v", err)
	}
	cd, err := c.ControlData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cd.State != "shut down" || cd.TimelineID != 1 || cd.SystemIdentifier == 0 {
		t.Fatalf("control data %+v", cd)
	}

	configure(t, c)
	s := ManagedSettings(c.Options())
	s["fsync"], s["shared_buffers"], s["max_connections"] = "off", "16MB", "30"
	if changed, err := c.WriteManagedConfig(ctx, s); err != nil || changed {
		t.Fatalf("rewriting the same managed config: changed=%v err=%v", changed, err)
	}
	if changed, err := c.WriteHBA(ctx, HBAConfig{ReplicationUser: "replicator"}); err != nil || changed {
		t.Fatalf("rewriting the same pg_hba.conf: changed=%v err=%v", changed, err)
	}
	conf, _ := os.ReadFile(filepath.Join(c.opts.DataDir, "postgresql.conf"))
	if n := strings.Count(string(conf), "include_if_exists = 'postgresql.hasidecar.conf'"); n != 1 {
		t.Fatalf("postgresql.conf has %d include lines", n)
	}

	start := time.Now()
	mustStart(t, c)
	t.Logf("start took %s", time.Since(start))
	if !c.Running() || c.PID() == 0 {
		t.Fatal("not running after Start")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.InRecovery || st.Timeline != 1 || st.SystemIdentifier != cd.SystemIdentifier ||
		st.CurrentLSN == 0 || st.FlushLSN == 0 || time.Since(st.PostmasterStart) > time.Minute {
		t.Fatalf("status %+v (sysid want %d)", st, cd.SystemIdentifier)
	}
	if cf, err := c.ReadControlFile(); err != nil || cf.State != "in production" || cf.SystemIdentifier != cd.SystemIdentifier {
		t.Fatalf("ReadControlFile while running: %+v %v", cf, err)
	}
	var port string
	if err := c.QueryRow(ctx, "SHOW port", nil, &port); err != nil || port != strconv.Itoa(c.opts.Port) {
		t.Fatalf("SHOW port = %q, %v", port, err)
	}
	if err := c.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if pending, err := c.PendingRestart(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("PendingRestart = %v, %v", pending, err)
	}
	if err := c.TerminateBackends(ctx); err != nil {
		t.Fatal(err)
	}

	// A second Controller sees our postmaster as foreign.
	c2, err := New(c.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(ctx); !errors.Is(err, ErrForeignPostmaster) {
		t.Fatalf("Start over a running postmaster: %v", err)
	} else {
		t.Logf("foreign postmaster error: %v", err)
	}
	if st2, err := c2.Status(ctx); err != nil || !st2.Running || st2.SystemIdentifier != cd.SystemIdentifier {
		t.Fatalf("foreign status %+v, %v", st2, err)
	}

	// Stop fast: pid file gone, clean shutdown.
	exited := c.Exited()
	if err := c.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	default:
		t.Fatal("Exited not closed after Stop")
	}
	if c.Running() || c.PID() != 0 {
		t.Fatal("still running after Stop")
	}
	if _, err := os.Stat(filepath.Join(c.opts.DataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after stop: %v", err)
	}
	if err := c.Stop(ctx, StopFast); err != nil {
		t.Fatalf("Stop when stopped: %v", err)
	}
	cd, err = c.ControlData(ctx)
	if err != nil || cd.State != "shut down" {
		t.Fatalf("control data after fast stop: %+v %v", cd, err)
	}
	// pg_control read directly says what pg_controldata says.
	if cf, err := c.ReadControlFile(); err != nil || cf.State != cd.State || cf.CheckpointLSN != cd.CheckpointLSN || cf.SystemIdentifier != cd.SystemIdentifier {
		t.Fatalf("ReadControlFile after fast stop: %+v %v; pg_controldata: %+v", cf, err, cd)
	}
	if st, err := c.Status(ctx); err != nil || st.Running {
		t.Fatalf("status when stopped: %+v %v", st, err)
	}
	if err := c.Exec(ctx, "SELECT 1"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Exec when stopped: %v", err)
	}

	// Kill takes down every Postgres process at once.
	mustStart(t, c)
	pid := c.PID()
	kids := descendants(pid)
	if len(kids) < 3 {
		t.Fatalf("postmaster %d has only %d children", pid, len(kids))
	}
	exited = c.Exited()
	c.Kill()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("postmaster alive 5s after Kill")
	}
	for _, k := range kids {
		if !waitGone(k, 5*time.Second) {
			t.Errorf("child %d of the killed postmaster survives", k)
		}
	}

	// Restart after the crash, then stop it through the foreign path.
	mustStart(t, c)
	exited = c.Exited()
	if err := c2.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("postmaster alive after a foreign stop")
	}
	if _, err := c.RemoveDataDir(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.InspectDataDir(ctx); st != DataDirMissing {
		t.Fatalf("after RemoveDataDir: %v", st)
	}
	old, _ := filepath.Glob(c.opts.DataDir + ".old-*")
	if len(old) != 1 {
		t.Fatalf("moved-aside data dirs: %v", old)
	}
}

func TestStartPortInUse(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	c := newInstance(t, baseDir(t), "n1")
	fromTemplate(t, c)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.opts.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = c.Start(ctx)
	want := fmt.Sprintf("port %d on 127.0.0.1 is already in use by another process; choose another postgres.port", c.opts.Port)
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start on a used port: %v", err)
	}
	if c.Running() {
		t.Fatal("running after a refused start")
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	c := newInstance(t, baseDir(t), "n1")
	fromTemplate(t, c)
	s := ManagedSettings(c.Options())
	s["shared_buffers"] = "banana"
	if _, err := c.WriteManagedConfig(ctx, s); err != nil {
		t.Fatal(err)
	}
	err := c.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited during start") || !strings.Contains(err.Error(), "banana") {
		t.Fatalf("Start with a bad setting: %v", err)
	}
	t.Logf("start failure: %v", err)
}

// TestPdeathsig: a helper process (this test binary, re-executed) starts
// Postgres through a Controller; SIGKILL of the helper takes the postmaster
// and its children down.
func TestPdeathsig(t *testing.T) {
	needPG(t)
	base := baseDir(t)
	c := newInstance(t, base, "n1")
	fromTemplate(t, c)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envChildData+"="+filepath.Dir(c.opts.DataDir), envChildPort+"="+strconv.Itoa(c.opts.Port))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	var pid int
	select {
	case s := <-line:
		if _, err := fmt.Sscanf(s, "PID %d", &pid); err != nil {
			t.Fatalf("helper said %q", s)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("helper did not start Postgres")
	}
	kids := descendants(pid)
	t.Cleanup(func() { KillTree(pid) })
	if !processAlive(pid) || len(kids) == 0 {
		t.Fatalf("postmaster %d not running (children %v)", pid, kids)
	}

	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !waitGone(pid, 5*time.Second) {
		t.Fatalf("postmaster %d still alive 5s after its parent was SIGKILLed", pid)
	}
	t.Logf("postmaster gone %s after SIGKILL of its parent", time.Since(killed).Round(time.Millisecond))
	for _, k := range kids {
		if !waitGone(k, 5*time.Second) {
			t.Errorf("postgres child %d survives", k)
		}
	}
	if !strings.Contains(fileTail(c.opts.LogFile, 0, 20), "received immediate shutdown request") {
		t.Errorf("log does not show an immediate shutdown:\n%s", fileTail(c.opts.LogFile, 0, 20))
	}
}

// pgConnect opens a TCP connection with a password (as a client would).
func pgConnect(ctx context.Context, c *Controller, user, password string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, BuildConninfo(map[string]string{"host": "127.0.0.1", "port": strconv.Itoa(c.opts.Port),
		"user": user, "password": password, "dbname": "postgres", "sslmode": "disable"}))
}

// TestStopContextEnded: a fast stop whose context has already ended
// escalates to immediate at once and still returns only when Postgres is
// gone (the fencing contract).
func TestStopContextEnded(t *testing.T) {
	needPG(t)
	c := newInstance(t, baseDir(t), "n1")
	fromTemplate(t, c)
	mustStart(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := c.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %s", time.Since(start))
	if c.Running() {
		t.Fatal("running after Stop")
	}
	cd, err := c.ControlData(context.Background())
	if err != nil || cd.State != "in production" {
		t.Fatalf("after an immediate stop the cluster should need crash recovery: %+v %v", cd, err)
	}
}
