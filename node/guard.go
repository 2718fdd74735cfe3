package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/hasidecar/hasidecar/pgctl"
)

// pgGuard is the independent watchdog process (`hasidecar pgguard`, see
// pgctl/guard.go) beside a running postmaster: it kills Postgres when the
// write deadline this sidecar gave it passes, i.e. when the sidecar is frozen
// and cannot fence. The parent-death signal covers a dead sidecar; the guard
// covers a stopped one.
type pgGuard struct {
	cmd  *exec.Cmd
	w    io.WriteCloser
	pid  int // the postmaster it guards (0: it waits for the one about to start)
	last string
	sent time.Time
	done chan struct{}
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

// UpdateGuardDeadline tells the guard the deadline (zero: disarm). Arm
// lines carry an absolute deadline: sent when it moved, and repeated once
// a second anyway.
func (p *pgPostgres) UpdateGuardDeadline(deadline time.Time) error {
	p.guardMu.Lock()
	defer p.guardMu.Unlock()
	g := p.guard
	if g == nil {
		return errors.New("no guard runs")
	}
	line := "disarm\n"
	if !deadline.IsZero() {
		line = pgctl.GuardLine(true, time.Until(deadline))
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
	if _, err := fmt.Sscanf(a, "arm %d", &x); err != nil {
		return a == b
	}
	if _, err := fmt.Sscanf(b, "arm %d", &y); err != nil {
		return false
	}
	d := x - y
	return d > -10e6 && d < 10e6
}

func (p *pgPostgres) startGuard(pm int) (*pgGuard, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"pgguard", "--postmaster", strconv.Itoa(pm)}
	if pm == 0 {
		args = []string{"pgguard", "--data-dir", p.ctl.Options().DataDir}
	}
	if !p.cfg.Postgres.DisableLeaseGate {
		// The lease gate (pgctl/gate.go): always running, so that a
		// switch to asynchronous mode finds it connected.
		o := p.ctl.Options()
		args = append(args, "--gate-socket", o.SocketDir, "--gate-port", strconv.Itoa(o.Port), "--gate-user", o.Superuser)
	}
	cmd := exec.Command(self, args...)
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group; no parent-death signal: when this sidecar
	// dies the guard sees its pipe close, kills Postgres, and exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s pgguard: %w", self, err)
	}
	g := &pgGuard{cmd: cmd, w: w, pid: pm, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(g.done)
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
