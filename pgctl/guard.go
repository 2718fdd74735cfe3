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
//
// When an armed deadline passes without a newer one — the sidecar is frozen
// (SIGSTOP, a stalled VM) and cannot fence — the guard kills the whole
// Postgres process tree. When the pipe closes (the sidecar died) it does the
// same, and when the postmaster is gone it exits. DESIGN.md, "Lease and
// fencing", point 3.
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
// on dataDir), reading commands from in, and reports what it did on logf.
// With gate set it also runs the lease gate (gate.go) over that
// connection, acknowledging WAL only while armed and before the deadline.
// It returns when the postmaster is gone (killed by the guard or not), when
// the sidecar went away before any postmaster appeared, or when ctx ends.
func RunGuard(ctx context.Context, pid int, dataDir string, in io.Reader, gate *pgconn.Config, logf func(format string, args ...any)) error {
	if pid <= 0 && dataDir == "" {
		return fmt.Errorf("pgguard: neither a postmaster pid nor a data directory to wait on")
	}
	var mu sync.Mutex
	armed, deadline, eof, hint := false, int64(0), false, 0
	if gate != nil {
		ok := func() bool {
			mu.Lock()
			a, d, gone := armed, deadline, eof
			mu.Unlock()
			return a && !gone && MonotonicNow() < d
		}
		gctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := &Gate{Config: gate, OK: ok, Logger: hclog.New(&hclog.LoggerOptions{
				Name: "pgguard", Output: os.Stderr, Level: hclog.Info,
			})}
			_ = g.Run(gctx)
		}()
		defer func() { cancel(); wg.Wait() }()
	}
	// The reader applies each line and signals changed (eof included).
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			mu.Lock()
			switch {
			case len(f) == 1 && f[0] == "disarm":
				armed = false
			case len(f) == 2 && f[0] == "arm":
				if d, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					armed, deadline = true, d
				}
			case len(f) == 2 && f[0] == "pid":
				if p, err := strconv.Atoi(f[1]); err == nil && p > 0 {
					hint = p
				}
			}
			mu.Unlock()
			signal()
		}
		mu.Lock()
		eof = true
		mu.Unlock()
		signal()
	}()
	state := func() (bool, int64, bool) {
		mu.Lock()
		defer mu.Unlock()
		return armed, deadline, eof
	}
	// Waiting for the postmaster about to start: postmaster.pid is read
	// every 10 ms, only for as long as a start takes.
	for pid <= 0 {
		mu.Lock()
		h := hint
		mu.Unlock()
		if p, ok := PostmasterOn(dataDir); ok {
			pid = p
		} else if h > 0 && processAlive(h) {
			pid = h
		}
		if pid > 0 {
			logf("pgguard: guarding the postmaster (pid %d) on %s", pid, dataDir)
			break
		}
		if _, _, gone := state(); gone {
			return nil // the sidecar went away and no postmaster started
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Then nothing polls: the postmaster's exit (a pidfd), a new line, or
	// a timer at the deadline wakes the guard. The timer runs on
	// CLOCK_MONOTONIC like the deadline: a guard frozen past it and thawed
	// fires at once.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	exited := watchExit(wctx, pid)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		a, d, gone := state()
		switch {
		case !processAlive(pid):
			return nil
		case gone:
			logf("pgguard: the sidecar is gone: killing postgres (pid %d)", pid)
			KillTree(pid)
			return nil
		case a && MonotonicNow() > d:
			logf("pgguard: the write deadline passed without a renewal from the sidecar (frozen?): killing postgres (pid %d)", pid)
			KillTree(pid)
			return nil
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
		case <-changed:
		case <-timer.C:
		}
	}
}

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
