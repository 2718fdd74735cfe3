package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hasidecar/hasidecar/internal/guardcmd"
	"github.com/hasidecar/hasidecar/pgctl"
)

// pgGuard is the independent watchdog process (hasidecar-guard or
// `hasidecar pgguard`: guardCommand; see
// pgctl/guard.go) beside a running postmaster: it kills Postgres when the
// write deadline this sidecar gave it passes, i.e. when the sidecar is frozen,
// dead or restarting too slowly and cannot fence. Unless
// postgres.stop_on_exit, it listens on a control socket in the state_dir
// and outlives this sidecar, and the next one attaches to it (AdoptGuard)
// with the postmaster under it; with stop_on_exit Postgres dies with the
// sidecar (parent-death signal) and the guard kills it when its pipe closes.
type pgGuard struct {
	w    io.WriteCloser // the guard's stdin, or the control connection
	pid  int            // the postmaster it guards (0: it waits for the one about to start)
	last string
	sent time.Time
	done <-chan struct{} // closed when the guard process exited
}

// StartGuard makes sure a guard watches the running postmaster or, when
// none runs, waits on the data directory for the one about to start (the
// keeper arms it before a start as primary): a guard of another
// postmaster, or one that exited, is replaced.
func (p *pgPostgres) StartGuard() error {
	p.guardMu.Lock()
	defer p.guardMu.Unlock()
	pm := p.ctl.PID()
	g := p.guard
	if g != nil && (g.exited() || (g.pid != 0 && g.pid != pm)) {
		p.stopGuard()
		g = nil
	}
	if g == nil {
		var err error
		if g, err = p.startGuard(pm); err != nil {
			return err
		}
		p.guard = g
	}
	if g.pid == 0 && pm != 0 {
		// The waiting guard adopts it from postmaster.pid by itself; it
		// is told the pid too, in case it could not (the guard must never
		// be believed to watch a postmaster it does not know).
		if _, err := fmt.Fprintf(g.w, "pid %d\n", pm); err != nil {
			return fmt.Errorf("tell the postgres guard the postmaster's pid: %w", err)
		}
		g.pid = pm
	}
	return nil
}

// UpdateGuardDeadline tells the guard the deadline (zero: disarm) and the
// lease term it belongs to. Arm
// lines carry an absolute deadline: sent when it moved, and repeated once
// a second anyway.
func (p *pgPostgres) UpdateGuardDeadline(deadline time.Time, term uint64) error {
	p.guardMu.Lock()
	defer p.guardMu.Unlock()
	g := p.guard
	if g == nil {
		return errors.New("no guard runs")
	}
	line := "disarm\n"
	if !deadline.IsZero() {
		line = pgctl.GuardArm(pgctl.MonotonicNow()+time.Until(deadline).Nanoseconds(), term)
	}
	if sameDeadline(line, g.last) && time.Since(g.sent) < time.Second {
		return nil
	}
	if _, err := io.WriteString(g.w, line); err != nil {
		return err
	}
	g.last, g.sent = line, time.Now()
	return nil
}

// sameDeadline: two arm lines within 10 ms of each other, or two disarms.
func sameDeadline(a, b string) bool {
	var x, y int64
	var s, t uint64
	if _, err := fmt.Sscanf(a, "arm %d %d", &x, &s); err != nil {
		return a == b
	}
	if _, err := fmt.Sscanf(b, "arm %d %d", &y, &t); err != nil || s != t {
		return false
	}
	d := x - y
	return d > -10e6 && d < 10e6
}

// guardCommand is the program that runs the guard and the arguments before
// its flags: hasidecar-guard when it is installed beside this binary (a
// few MB resident instead of the whole sidecar's pages), else this binary's
// own hidden `pgguard` verb (the same flags: internal/guardcmd).
func guardCommand() (string, []string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find the guard program: %w", err)
	}
	prog, args := guardCommandBeside(self)
	return prog, args, nil
}

func guardCommandBeside(self string) (string, []string) {
	small := filepath.Join(filepath.Dir(self), guardcmd.Binary)
	if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return small, nil
	}
	return self, []string{"pgguard"}
}

func (p *pgPostgres) startGuard(pm int) (*pgGuard, error) {
	prog, args, err := guardCommand()
	if err != nil {
		return nil, err
	}
	if pm == 0 {
		args = append(args, "--data-dir", p.ctl.Options().DataDir)
	} else {
		args = append(args, "--postmaster", strconv.Itoa(pm))
	}
	if !p.cfg.Postgres.StopOnExit {
		if err := os.MkdirAll(filepath.Dir(p.guardSocket()), 0o700); err != nil {
			return nil, fmt.Errorf("postgres guard: control socket directory: %w", err)
		}
		args = append(args, "--control", p.guardSocket())
	}
	if !p.cfg.Postgres.DisableLeaseGate {
		// The lease gate (pgctl/gate.go): always running, so that a
		// switch to asynchronous mode finds it connected.
		o := p.ctl.Options()
		args = append(args, "--gate-socket", o.SocketDir, "--gate-port", strconv.Itoa(o.Port), "--gate-user", o.Superuser)
	}
	cmd := exec.Command(prog, args...)
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group; no parent-death signal: when this sidecar
	// dies the guard sees its pipe close and kills Postgres, at once with
	// stop_on_exit, else at the last deadline unless a new sidecar attached.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the postgres guard %s: %w", prog, err)
	}
	done := make(chan struct{})
	g := &pgGuard{w: w, pid: pm, done: done}
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.logger.Debug("postgres guard started", "guard_pid", cmd.Process.Pid, "postmaster", pm)
	return g, nil
}

func (g *pgGuard) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

func (p *pgPostgres) guardSocket() string { return pgctl.GuardSocket(p.cfg.StateDir) }

// GuardStatus asks the guard a previous sidecar left running (on the
// control socket) what it guards, and detaches again.
func (p *pgPostgres) GuardStatus(ctx context.Context) (pgctl.GuardStatus, error) {
	if p.cfg.Postgres.StopOnExit {
		return pgctl.GuardStatus{}, fmt.Errorf("postgres.stop_on_exit is set: no guard is adopted: %w", pgctl.ErrNoGuard)
	}
	c, st, err := pgctl.AttachGuard(ctx, p.guardSocket())
	if err != nil {
		return pgctl.GuardStatus{}, err
	}
	_ = c.Close()
	return st, nil
}

// AdoptGuard attaches to the guard a previous sidecar left running beside
// the postmaster pid and keeps the connection as this sidecar's guard.
func (p *pgPostgres) AdoptGuard(ctx context.Context, pid int) (pgctl.GuardStatus, error) {
	p.guardMu.Lock()
	defer p.guardMu.Unlock()
	c, st, err := pgctl.AttachGuard(ctx, p.guardSocket())
	if err != nil {
		return st, err
	}
	if st.PID != pid {
		_ = c.Close()
		return st, fmt.Errorf("the postgres guard (pid %d) guards postmaster %d, not %d", st.GuardPID, st.PID, pid)
	}
	p.stopGuard()
	p.guard = &pgGuard{w: c, pid: pid, done: c.Done()}
	p.logger.Info("attached to the running postgres guard", "guard_pid", st.GuardPID, "postmaster", pid, "armed", st.Armed, "term", st.Term)
	return st, nil
}

// DetachGuard leaves the guard running with its last deadline (a graceful
// exit that keeps Postgres running for the next sidecar).
func (p *pgPostgres) DetachGuard() {
	p.guardMu.Lock()
	defer p.guardMu.Unlock()
	g := p.guard
	if g == nil {
		return
	}
	p.guard = nil
	_, _ = io.WriteString(g.w, "detach\n")
	_ = g.w.Close()
}

// StopGuard disarms and closes the guard of a postmaster that is gone (it
// then exits by itself).
func (p *pgPostgres) StopGuard() {
	p.guardMu.Lock()
	defer p.guardMu.Unlock()
	p.stopGuard()
}

func (p *pgPostgres) stopGuard() {
	g := p.guard
	if g == nil {
		return
	}
	p.guard = nil
	if !g.exited() && g.pid != 0 && p.ctl.PID() == g.pid {
		_, _ = io.WriteString(g.w, "disarm\n")
	}
	_ = g.w.Close()
}
