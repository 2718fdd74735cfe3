package pgctl

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"
)

// settledChild returns the current child after waiting for a fork in
// progress (Start) to register it, so Stop and Kill never miss one.
func (c *Controller) settledChild() *child {
	c.spawnMu.Lock()
	defer c.spawnMu.Unlock()
	return c.current()
}

// Stop shuts Postgres down and returns when the postmaster is gone. StopFast
// escalates to immediate after StopTimeout, and immediate to SIGKILL of
// every Postgres process after 10 s more. If ctx ends first, Stop escalates
// at once and still waits for the postmaster to be gone: it returns an error
// only if Postgres could not be stopped. A postmaster this Controller did not
// start is stopped with pg_ctl stop. No-op when nothing runs.
func (c *Controller) Stop(ctx context.Context, mode StopMode) error {
	c.closeConn()
	if ch := c.settledChild(); ch != nil && !ch.exited() {
		return c.stopChild(ctx, ch, mode)
	}
	if pid, alive := c.postmasterPID(); alive {
		return c.stopForeign(ctx, pid, mode)
	}
	return nil
}

func (c *Controller) stopChild(ctx context.Context, ch *child, mode StopMode) error {
	start := time.Now()
	ch.stopped.Store(true)
	if mode == StopFast {
		c.log.Info("stopping postgres (fast)", "pid", ch.pid)
		_ = syscall.Kill(ch.pid, syscall.SIGINT)
		t := time.NewTimer(c.opts.StopTimeout)
		defer t.Stop()
		select {
		case <-ch.done:
			c.log.Info("postgres stopped", "mode", "fast", "took", time.Since(start).Round(time.Millisecond))
			return nil
		case <-t.C:
			c.log.Warn("fast stop did not finish in time: escalating to immediate", "stop_timeout", c.opts.StopTimeout)
		case <-ctx.Done():
			c.log.Warn("context ended during fast stop: escalating to immediate", "error", ctx.Err())
		}
	}
	c.log.Info("stopping postgres (immediate)", "pid", ch.pid)
	_ = syscall.Kill(ch.pid, syscall.SIGQUIT)
	t := time.NewTimer(immediateGrace)
	defer t.Stop()
	select {
	case <-ch.done:
		c.log.Info("postgres stopped", "mode", "immediate", "took", time.Since(start).Round(time.Millisecond))
		return nil
	case <-t.C:
	}
	c.log.Error("postgres ignored an immediate shutdown: killing every process", "pid", ch.pid)
	KillTree(ch.pid)
	select {
	case <-ch.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stopping postgres: pid %d survives SIGKILL", ch.pid)
	}
}

func (c *Controller) stopForeign(ctx context.Context, pid int, mode StopMode) error {
	c.log.Warn("stopping a postmaster hasidecar did not start", "pid", pid, "mode", mode)
	if mode == StopFast {
		secs := strconv.Itoa(int((c.opts.StopTimeout + time.Second - 1) / time.Second))
		cctx, cancel := context.WithTimeout(ctx, c.opts.StopTimeout+5*time.Second)
		_, err := c.run(cctx, runSpec{name: "pg_ctl", args: []string{"stop", "-D", c.opts.DataDir, "-m", "fast", "-w", "-t", secs}})
		cancel()
		if err == nil && waitGone(pid, 5*time.Second) {
			return nil
		}
		c.log.Warn("fast stop of the foreign postmaster failed: escalating to immediate", "error", err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), immediateGrace+5*time.Second)
	defer cancel()
	_, err := c.run(cctx, runSpec{name: "pg_ctl", args: []string{"stop", "-D", c.opts.DataDir, "-m", "immediate", "-w", "-t", strconv.Itoa(int(immediateGrace / time.Second))}})
	if waitGone(pid, time.Second) {
		return nil
	}
	c.log.Error("foreign postmaster survives an immediate stop: killing every process", "pid", pid, "error", err)
	KillTree(pid)
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("stopping foreign postmaster pid %d: still alive after SIGKILL", pid)
}

// Kill SIGKILLs the postmaster and every process it forked, at once, for
// fencing emergencies. Postgres children are session leaders of their own
// (they call setsid), so a process-group kill would miss them: Kill freezes
// the postmaster, collects its descendants from /proc, and kills them all.
func (c *Controller) Kill() {
	c.closeConn()
	if ch := c.settledChild(); ch != nil && !ch.exited() {
		ch.stopped.Store(true)
		c.log.Warn("killing postgres (SIGKILL)", "pid", ch.pid)
		KillTree(ch.pid)
		return
	}
	if pid, alive := c.postmasterPID(); alive {
		c.log.Warn("killing foreign postgres (SIGKILL)", "pid", pid)
		KillTree(pid)
	}
}

// Reload makes the postmaster re-read its configuration (SIGHUP).
func (c *Controller) Reload(ctx context.Context) error {
	if ch := c.current(); ch != nil && !ch.exited() {
		if err := syscall.Kill(ch.pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("reloading postgres (pid %d): %w", ch.pid, err)
		}
		return nil
	}
	if _, alive := c.postmasterPID(); alive {
		if _, err := c.run(ctx, runSpec{name: "pg_ctl", args: []string{"reload", "-D", c.opts.DataDir}}); err != nil {
			return fmt.Errorf("reloading postgres: %w", err)
		}
		return nil
	}
	return fmt.Errorf("reloading postgres: %w", ErrNotRunning)
}
