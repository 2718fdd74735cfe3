package pgctl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"
)

// The guard is a small process of its own (`hasidecar pgguard`) that the
// sidecar starts beside a Postgres it may let accept writes. The sidecar
// tells it, over a pipe, until when that Postgres may accept writes:
//
//	arm <deadline>   deadline in CLOCK_MONOTONIC nanoseconds (shared by all processes)
//	disarm           Postgres runs in recovery: nothing to guard
//	pid <pid>        (a guard started before the postmaster) the postmaster that started
//	detach           the sidecar exits on purpose and leaves Postgres running
//
// `arm` may carry the lease term after the deadline (arm <deadline> <term>):
// a sidecar that attaches later (guardsock.go) reads it back.
//
// When an armed deadline passes without a newer one — the sidecar is frozen
// (SIGSTOP, a stalled VM), dead, or restarting too slowly — the guard kills
// the whole Postgres process tree; when the postmaster is gone it exits.
// An adoptable guard (GuardConfig.Control) outlives its sidecar and keeps
// the last deadline; one without a control socket kills Postgres at once
// when its pipe closes. DESIGN.md, "Lease and fencing", point 3.
//
// Before a start as primary the sidecar starts the guard with no pid but
// the data directory, and arms it, before the postmaster: the guard adopts
// the postmaster that postmaster.pid then names (a live postgres process
// whose working directory is that data directory), or the one a `pid` line
// names once the sidecar's start returned, whichever comes first, so no instant exists in
// which a Postgres that may accept writes has no armed guard — not even
// when the sidecar freezes right after it started Postgres. A deadline
// that passes before the postmaster appears kills it as soon as it does.

// MonotonicNow is CLOCK_MONOTONIC in nanoseconds: the same clock in every
// process on the machine, unlike Go's per-process monotonic readings.
func MonotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// GuardLine renders one command for the guard: arm until d from now, or
// disarm when armed is false.
func GuardLine(armed bool, until time.Duration) string {
	if !armed {
		return "disarm\n"
	}
	return "arm " + strconv.FormatInt(MonotonicNow()+until.Nanoseconds(), 10) + "\n"
}

// RunGuard runs the guard for the postmaster pid (0: the one about to start
// on dataDir), reading commands from in, with no control socket: when in
// ends (the sidecar died) it kills Postgres at once. See RunGuardWith.
func RunGuard(ctx context.Context, pid int, dataDir string, in io.Reader, gate *pgconn.Config, logf func(format string, args ...any)) error {
	return RunGuardWith(ctx, GuardConfig{PID: pid, DataDir: dataDir, In: in, Gate: gate, Logf: logf})
}

// GuardConfig is what a guard runs with.
type GuardConfig struct {
	PID     int    // the postmaster (0: the one about to start on DataDir)
	DataDir string // where to find the postmaster about to start
	// In carries the starting sidecar's commands (its stdin pipe); nil: none.
	In io.Reader
	// Control is the path of a unix socket on which later sidecars attach
	// (guardsock.go). With it the guard outlives its sidecar: when no
	// sidecar is attached any more (a graceful detach, a crash, a restart
	// of the sidecar) it keeps the last deadline and kills Postgres only
	// when that passes; a disarmed (standby) postmaster runs on. Without
	// it, the end of In kills Postgres at once.
	Control string
	// Gate, when set, runs the lease gate (gate.go) over that connection,
	// acknowledging WAL only while armed and before the deadline.
	Gate *pgconn.Config
	Logf func(format string, args ...any)
}

// guardState is what the guard knows, shared by its readers.
type guardState struct {
	mu       sync.Mutex
	armed    bool
	deadline int64  // CLOCK_MONOTONIC ns
	term     uint64 // the lease term the deadline belongs to (0: not told)
	hint     int    // a pid line's postmaster
	pid      int    // the postmaster guarded (0: not yet)
	open     int    // attached sidecars (the In pipe included)
	detached bool   // the last sidecar said detach before it went
	changed  chan struct{}
}

func (g *guardState) signal() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// apply runs one command line.
func (g *guardState) apply(line string) {
	f := strings.Fields(line)
	g.mu.Lock()
	switch {
	case len(f) == 1 && f[0] == "disarm":
		g.armed = false
	case (len(f) == 2 || len(f) == 3) && f[0] == "arm":
		if d, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			g.armed, g.deadline = true, d
			if len(f) == 3 {
				if t, err := strconv.ParseUint(f[2], 10, 64); err == nil {
					g.term = t
				}
			}
		}
	case len(f) == 2 && f[0] == "pid":
		if p, err := strconv.Atoi(f[1]); err == nil && p > 0 {
			g.hint = p
		}
	case len(f) == 1 && f[0] == "detach":
		g.detached = true
	}
	g.mu.Unlock()
	g.signal()
}

// read applies the lines of one attached sidecar until it goes.
func (g *guardState) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		g.apply(sc.Text())
	}
	g.mu.Lock()
	g.open--
	g.mu.Unlock()
	g.signal()
}

// snapshot: armed, deadline, and whether no sidecar is attached.
func (g *guardState) snapshot() (bool, int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.armed, g.deadline, g.open <= 0
}

// RunGuardWith runs the guard and reports what it did on Logf. It returns
// when the postmaster is gone (killed by the guard or not), when no
// sidecar is attached and no postmaster appeared, or when ctx ends.
func RunGuardWith(ctx context.Context, c GuardConfig) error {
	if c.PID <= 0 && c.DataDir == "" {
		return fmt.Errorf("pgguard: neither a postmaster pid nor a data directory to wait on")
	}
	logf := c.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	g := &guardState{changed: make(chan struct{}, 1), pid: c.PID}
	adoptable := c.Control != ""
	if c.Gate != nil {
		ok := func() bool {
			g.mu.Lock()
			a, d, gone := g.armed, g.deadline, g.open <= 0
			g.mu.Unlock()
			// An adoptable guard keeps answering until the deadline with no
			// sidecar attached: the next sidecar renews before it.
			return a && (adoptable || !gone) && MonotonicNow() < d
		}
		gctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			gt := &Gate{Config: c.Gate, OK: ok, Logger: hclog.New(&hclog.LoggerOptions{
				Name: "pgguard", Output: os.Stderr, Level: hclog.Info,
			})}
			_ = gt.Run(gctx)
		}()
		defer func() { cancel(); wg.Wait() }()
	}
	if c.In != nil {
		g.open++
		go g.read(c.In)
	}
	if adoptable {
		stop, err := serveGuardControl(c.Control, g, logf)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Waiting for the postmaster about to start: postmaster.pid is read
	// every 10 ms, only for as long as a start takes. With no sidecar
	// attached, an adoptable guard waits guardOrphanWait more (its sidecar
	// may have died right after forking a postmaster that outlives it).
	var goneAt time.Time
	for pid := c.PID; pid <= 0; {
		g.mu.Lock()
		h := g.hint
		g.mu.Unlock()
		if p, ok := PostmasterOn(c.DataDir); ok {
			pid = p
		} else if h > 0 && processAlive(h) {
			pid = h
		}
		if pid > 0 {
			g.mu.Lock()
			g.pid = pid
			g.mu.Unlock()
			logf("pgguard: guarding the postmaster (pid %d) on %s", pid, c.DataDir)
			break
		}
		if _, _, gone := g.snapshot(); !gone {
			goneAt = time.Time{}
		} else if !adoptable {
			return nil // the sidecar went away and no postmaster started
		} else if goneAt.IsZero() {
			goneAt = time.Now()
		} else if time.Since(goneAt) > guardOrphanWait {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-g.changed:
		case <-time.After(10 * time.Millisecond):
		}
	}
	g.mu.Lock()
	pid := g.pid
	g.mu.Unlock()
	// Then nothing polls: the postmaster's exit (a pidfd), a new line, or
	// a timer at the deadline wakes the guard. The timer runs on
	// CLOCK_MONOTONIC like the deadline: a guard frozen past it and thawed
	// fires at once.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	exited := watchExit(wctx, pid)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wasGone := false
	for {
		a, d, gone := g.snapshot()
		switch {
		case !processAlive(pid):
			return nil
		case gone && !adoptable:
			logf("pgguard: the sidecar is gone: killing postgres (pid %d)", pid)
			KillTree(pid)
			return nil
		case a && MonotonicNow() > d:
			logf("pgguard: the write deadline passed without a renewal from the sidecar (frozen or gone?): killing postgres (pid %d)", pid)
			KillTree(pid)
			return nil
		}
		if gone != wasGone {
			wasGone = gone
			g.mu.Lock()
			det := g.detached
			g.mu.Unlock()
			switch {
			case gone && a:
				logf("pgguard: no sidecar attached (detached: %t): postgres (pid %d) runs until the deadline in %s unless a sidecar renews", det, pid, time.Duration(d-MonotonicNow()).Round(time.Millisecond))
			case gone:
				logf("pgguard: no sidecar attached (detached: %t): postgres (pid %d) runs on disarmed", det, pid)
			default:
				logf("pgguard: a sidecar attached")
			}
		}
		wait := time.Hour
		if a {
			wait = time.Duration(d-MonotonicNow()) + time.Millisecond
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
		case <-g.changed:
		case <-timer.C:
		}
	}
}

// guardOrphanWait: how long an adoptable guard with no sidecar attached
// waits for a postmaster to appear before it exits.
const guardOrphanWait = 5 * time.Second

// watchExit returns a channel closed when pid exits: a pidfd polled in a
// goroutine (it wakes once a second only to see whether ctx ended), or,
// where pidfds are missing, a check every 100 ms.
func watchExit(ctx context.Context, pid int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			defer unix.Close(fd)
			for ctx.Err() == nil {
				n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 1000)
				if n > 0 {
					return
				}
				if err != nil && err != unix.EINTR {
					break // fall back to checking
				}
			}
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for ctx.Err() == nil && processAlive(pid) {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}()
	return done
}
