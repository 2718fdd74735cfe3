package pgctl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// StopMode selects the shutdown mode.
type StopMode int

const (
	// StopFast: SIGINT (abort transactions, checkpoint, exit); escalates to
	// StopImmediate after Options.StopTimeout.
	StopFast StopMode = iota
	// StopImmediate: SIGQUIT (no checkpoint; crash recovery at next start).
	StopImmediate
)

func (m StopMode) String() string {
	if m == StopImmediate {
		return "immediate"
	}
	return "fast"
}

// child is one postmaster we started.
type child struct {
	pid     int
	done    chan struct{} // closed after Wait returned
	waitErr error         // set before done is closed
	logFrom int64         // LogFile size when it started
	stopped atomic.Bool   // Stop or Kill asked it to exit
}

func (ch *child) exited() bool {
	select {
	case <-ch.done:
		return true
	default:
		return false
	}
}

// immediateGrace: after SIGQUIT, how long before SIGKILL of everything.
const immediateGrace = 10 * time.Second

// Start starts `postgres -D DataDir` as a child of this process (never
// daemonized): it gets SIGQUIT when the OS thread that forked it exits, and
// that thread stays blocked in Wait for as long as the postmaster lives, so
// Postgres dies with this process — unless Options.SurviveExit, when it
// outlives this process under its guard. The server's stderr is appended to
// Options.LogFile. Start returns once Postgres accepts connections; if it
// exits first the error carries the last lines of the log. Port,
// listen_addresses and the socket directory from Options are passed on the
// command line, so they hold even when a cloned config file says otherwise.
// When our postmaster already runs, Start only waits for it to accept
// connections.
func (c *Controller) Start(ctx context.Context) error {
	c.opMu.Lock()
	ch, err := c.spawn(ctx)
	c.opMu.Unlock()
	if err != nil {
		return err
	}
	return c.waitReady(ctx, ch)
}

func (c *Controller) spawn(ctx context.Context) (*child, error) {
	if ch := c.current(); ch != nil && !ch.exited() {
		return ch, nil
	}
	if pid, alive := c.postmasterPID(); alive {
		return nil, fmt.Errorf("starting postgres: %w: postmaster pid %d (from %s/postmaster.pid); stop it (pg_ctl stop -D %s) or let hasidecar stop it, then start again",
			ErrForeignPostmaster, pid, c.opts.DataDir, c.opts.DataDir)
	}
	if err := c.CheckPortFree(ctx); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	state, err := c.InspectDataDir(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	if state == DataDirIncomplete {
		return nil, fmt.Errorf("starting postgres: refusing: data directory %s holds the remains of an interrupted %s (marker %s): re-clone it", c.opts.DataDir, c.incompleteOp(), c.markerPath())
	}
	if state != DataDirValid {
		return nil, fmt.Errorf("starting postgres: data directory %s is %s: initialize it (initdb) or clone it (pg_basebackup) first", c.opts.DataDir, state)
	}
	if err := c.ensureSocketDir(); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	if err := c.ensureLogFile(); err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	logf, err := os.OpenFile(c.opts.LogFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("starting postgres: opening log file: %w", err)
	}
	defer logf.Close() // the child has its own copy
	var from int64
	if st, err := logf.Stat(); err == nil {
		from = st.Size()
	}
	cmd := exec.Command(c.bin("postgres"), "-D", c.opts.DataDir,
		"-p", strconv.Itoa(c.opts.Port), "-k", c.opts.SocketDir, "-h", c.opts.ListenAddresses)
	cmd.Env = c.env("")
	cmd.Dir = c.homeDir()
	cmd.Stdout, cmd.Stderr = logf, logf
	var deathSig syscall.Signal = syscall.SIGQUIT
	if c.opts.SurviveExit {
		deathSig = 0 // adopted by the next sidecar, or killed by its guard
	}
	cmd.SysProcAttr = c.sysProcAttr(deathSig)

	ch := &child{done: make(chan struct{}), logFrom: from}
	// Stop and Kill wait on spawnMu, so they never miss a postmaster that
	// is being forked right now.
	c.spawnMu.Lock()
	defer c.spawnMu.Unlock()
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when this OS thread exits, so the thread stays
		// locked and blocked in Wait for the postmaster's whole life.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		ch.pid = cmd.Process.Pid
		started <- nil
		err := cmd.Wait()
		if ch.stopped.Load() {
			c.log.Info("postmaster exited", "pid", ch.pid, "status", exitString(err))
		} else {
			c.log.Warn("postmaster exited unexpectedly", "pid", ch.pid, "status", exitString(err), "log", c.opts.LogFile)
		}
		ch.waitErr = err
		close(ch.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	c.mu.Lock()
	c.child = ch
	c.mu.Unlock()
	c.closeConn()
	c.log.Info("postmaster started", "pid", ch.pid, "data_dir", c.opts.DataDir, "port", c.opts.Port, "log", c.opts.LogFile)
	return ch, nil
}

func exitString(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func (c *Controller) waitReady(ctx context.Context, ch *child) error {
	deadline := time.NewTimer(c.opts.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ready, err := c.probe(ctx)
		if ready {
			if err != nil {
				c.log.Error("postgres accepts connections but hasidecar cannot log in; write pg_hba.conf/pg_ident.conf with WriteHBA (the OS user of this process must be in IdentUsers)", "error", err)
			}
			c.log.Debug("postgres accepts connections", "pid", ch.pid)
			return nil
		}
		lastErr = err
		select {
		case <-ch.done:
			return fmt.Errorf("postgres (pid %d) exited during start (%s); last lines of %s:\n%s",
				ch.pid, exitString(ch.waitErr), c.opts.LogFile, fileTail(c.opts.LogFile, ch.logFrom, tailLines))
		case <-ctx.Done():
			return fmt.Errorf("waiting for postgres (pid %d, left running) to accept connections: %w", ch.pid, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("%w: pid %d still not accepting connections after %s (left running; last probe: %v); last lines of %s:\n%s",
				ErrStartTimeout, ch.pid, c.opts.StartTimeout, lastErr, c.opts.LogFile, fileTail(c.opts.LogFile, ch.logFrom, tailLines))
		case <-tick.C:
		}
	}
}

// Adopt takes over the postmaster pid that a previous process left running
// on DataDir (Options.SurviveExit): postmaster.pid must name it, alive, with
// the data directory as its working directory (PostmasterOn). From then on
// Running, PID, Exited, Stop, Kill and Reload treat it as this
// Controller's own (its exit is watched through a pidfd: it is not a child).
func (c *Controller) Adopt(pid int) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if ch := c.current(); ch != nil && !ch.exited() {
		return fmt.Errorf("adopt postmaster %d: %w (pid %d, started by this process)", pid, ErrRunning, ch.pid)
	}
	got, ok := PostmasterOn(c.opts.DataDir)
	if !ok || got != pid {
		return fmt.Errorf("adopt postmaster %d: %s/postmaster.pid names no live postmaster %d working in that directory (found %d, alive %t)", pid, c.opts.DataDir, pid, got, ok)
	}
	ch := &child{pid: pid, done: make(chan struct{})}
	if st, err := os.Stat(c.opts.LogFile); err == nil {
		ch.logFrom = st.Size()
	}
	exited := watchExit(context.Background(), pid)
	go func() {
		<-exited
		if ch.stopped.Load() {
			c.log.Info("adopted postmaster exited", "pid", pid)
		} else {
			c.log.Warn("adopted postmaster exited unexpectedly", "pid", pid, "log", c.opts.LogFile)
		}
		close(ch.done)
	}()
	c.mu.Lock()
	c.child = ch
	c.mu.Unlock()
	c.closeConn()
	c.log.Info("adopted the running postmaster", "pid", pid, "data_dir", c.opts.DataDir)
	return nil
}

// Running reports whether the postmaster we started (or adopted) is alive.
func (c *Controller) Running() bool {
	ch := c.current()
	return ch != nil && !ch.exited()
}

// Exited returns a channel closed when the current postmaster exits (a new
// channel per Start; already closed when none was started).
func (c *Controller) Exited() <-chan struct{} {
	if ch := c.current(); ch != nil {
		return ch.done
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// PID is the pid of our running postmaster, 0 when none.
func (c *Controller) PID() int {
	if ch := c.current(); ch != nil && !ch.exited() {
		return ch.pid
	}
	return 0
}

func (c *Controller) current() *child {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.child
}
