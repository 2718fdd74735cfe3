package pgctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The guard's control socket: a unix socket in a 0700 directory of the
// sidecar's state_dir, mode 0600, through which the next sidecar on the
// host attaches to a guard (and the postmaster under it) that a previous
// sidecar left running. A peer is accepted only with this process's uid
// (SO_PEERCRED), and the sidecar checks the guard's uid the same way. On
// attach the guard writes one status line,
//
//	guard <postmaster pid> <armed 0|1> <deadline ns> <term>
//
// (pid 0: no postmaster yet; the deadline CLOCK_MONOTONIC), then reads the
// same commands as on its stdin (guard.go).

// GuardSocket is where a guard's control socket lives below stateDir.
func GuardSocket(stateDir string) string { return filepath.Join(stateDir, "guard", "pgguard.sock") }

// GuardArm renders an arm command for an absolute deadline (CLOCK_MONOTONIC
// ns) granted in term.
func GuardArm(deadline int64, term uint64) string {
	return "arm " + strconv.FormatInt(deadline, 10) + " " + strconv.FormatUint(term, 10) + "\n"
}

// GuardStatus is what an attached guard says about itself.
type GuardStatus struct {
	PID      int    // the postmaster it guards (0: none yet)
	Armed    bool   // it kills Postgres at Deadline
	Deadline int64  // CLOCK_MONOTONIC ns
	Term     uint64 // the lease term of the deadline (0: unknown)
	GuardPID int    // the guard process itself
}

// Left is how long until the deadline, from now (negative: passed).
func (s GuardStatus) Left() time.Duration { return time.Duration(s.Deadline - MonotonicNow()) }

func (s GuardStatus) line() string {
	a := 0
	if s.Armed {
		a = 1
	}
	return fmt.Sprintf("guard %d %d %d %d\n", s.PID, a, s.Deadline, s.Term)
}

// ParseGuardStatus decodes a status line.
func ParseGuardStatus(line string) (GuardStatus, error) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "guard" {
		return GuardStatus{}, fmt.Errorf("not a guard status line: %q", line)
	}
	var s GuardStatus
	var err error
	var a int
	if s.PID, err = strconv.Atoi(f[1]); err == nil && s.PID >= 0 {
		if a, err = strconv.Atoi(f[2]); err == nil && (a == 0 || a == 1) {
			if s.Deadline, err = strconv.ParseInt(f[3], 10, 64); err == nil {
				s.Term, err = strconv.ParseUint(f[4], 10, 64)
			}
		} else if err == nil {
			err = fmt.Errorf("armed %q is neither 0 nor 1", f[2])
		}
	} else if err == nil {
		err = fmt.Errorf("negative pid %d", s.PID)
	}
	if err != nil {
		return GuardStatus{}, fmt.Errorf("guard status line %q: %w", line, err)
	}
	s.Armed = a == 1
	return s, nil
}

// serveGuardControl listens on path for attaching sidecars; stop closes
// the listener and removes the socket if it is still this guard's.
func serveGuardControl(path string, g *guardState, logf func(string, ...any)) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pgguard: control socket directory: %w", err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("pgguard: control socket directory: %w", err)
	}
	// A socket file nobody answers on is a dead guard's: replace it. One
	// that answers belongs to a live guard: refuse (one guard per data
	// directory; the sidecar attaches to it instead).
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("pgguard: another guard listens on %s", path)
	}
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("pgguard: control socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("pgguard: control socket: %w", err)
	}
	mine, _ := os.Stat(path)
	done := make(chan struct{})
	var connMu sync.Mutex
	var conns []*net.UnixConn
	go func() {
		defer close(done)
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			if uid, _, err := peerCred(c); err != nil || uid != os.Getuid() {
				logf("pgguard: refused a control connection from uid %d (want %d): %v", uid, os.Getuid(), err)
				c.Close()
				continue
			}
			g.mu.Lock()
			st := GuardStatus{PID: g.pid, Armed: g.armed, Deadline: g.deadline, Term: g.term}
			g.open++
			g.detached = false
			g.mu.Unlock()
			g.signal()
			if _, err := c.Write([]byte(st.line())); err != nil {
				g.mu.Lock()
				g.open--
				g.mu.Unlock()
				c.Close()
				continue
			}
			// Closed when the guard exits: the attached sidecar then
			// sees EOF.
			connMu.Lock()
			conns = append(conns, c)
			connMu.Unlock()
			go func() { defer c.Close(); g.read(c) }()
		}
	}()
	return func() {
		l.Close()
		<-done
		connMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connMu.Unlock()
		if now, err := os.Stat(path); err == nil && mine != nil && os.SameFile(now, mine) {
			_ = os.Remove(path)
		}
	}, nil
}

func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, 0, err
	}
	if cerr != nil {
		return -1, 0, cerr
	}
	return int(cred.Uid), int(cred.Pid), nil
}

// ErrNoGuard: no guard answers on the control socket.
var ErrNoGuard = errors.New("no guard answers on the control socket")

// GuardConn is a sidecar's attachment to a running guard.
type GuardConn struct {
	c    *net.UnixConn
	done chan struct{}
}

// AttachGuard connects to the guard listening at path, checks it runs as
// this process's uid, and reads its status. The connection stays open:
// write commands with Send; Done is closed when the guard exits.
func AttachGuard(ctx context.Context, path string) (*GuardConn, GuardStatus, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, GuardStatus{}, fmt.Errorf("attach to the postgres guard at %s: %w (%v)", path, ErrNoGuard, err)
	}
	c := conn.(*net.UnixConn)
	uid, gpid, err := peerCred(c)
	if err != nil || uid != os.Getuid() {
		c.Close()
		return nil, GuardStatus{}, fmt.Errorf("attach to the postgres guard at %s: it runs as uid %d, not %d (%v): refusing it", path, uid, os.Getuid(), err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, GuardStatus{}, fmt.Errorf("attach to the postgres guard at %s: reading its status: %w", path, err)
	}
	st, err := ParseGuardStatus(line)
	if err != nil {
		c.Close()
		return nil, GuardStatus{}, fmt.Errorf("attach to the postgres guard at %s: %w", path, err)
	}
	st.GuardPID = gpid
	_ = c.SetReadDeadline(time.Time{})
	g := &GuardConn{c: c, done: make(chan struct{})}
	go func() {
		// The guard writes nothing more: EOF (or an error) is its exit.
		_, _ = r.ReadString('\n')
		close(g.done)
	}()
	return g, st, nil
}

// Write sends command lines to the guard.
func (g *GuardConn) Write(p []byte) (int, error) { return g.c.Write(p) }

// Close detaches (the guard keeps running).
func (g *GuardConn) Close() error { return g.c.Close() }

// Done is closed when the guard has exited.
func (g *GuardConn) Done() <-chan struct{} { return g.done }
