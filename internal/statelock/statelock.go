// Package statelock is the exclusive lock an agent holds on its state_dir
// for as long as it runs: a second agent with the same state_dir exits at
// once naming the first, and tools (lab down, lab status) find a running
// agent by its lock file even when they did not start it.
//
// The lock is flock(2) on state_dir/hasidecar.lock, which holds the
// holder's pid. The kernel drops the lock when the holder's process dies,
// however it dies, so a stale file never blocks a restart. Go opens files
// close-on-exec: Postgres and the guard, started by the agent, do not
// inherit it.
package statelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FileName is the lock file's name inside state_dir.
const FileName = "hasidecar.lock"

// ErrHeld: another live process holds the lock.
var ErrHeld = errors.New("state_dir is locked by another agent")

// Lock is a held state_dir lock.
type Lock struct {
	f *os.File
}

// Path is the lock file of dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Acquire takes the lock on dir (which must exist) without waiting and
// records this process's pid in it. When another agent holds it, the
// error wraps ErrHeld and names that agent's pid.
func Acquire(dir string) (*Lock, error) {
	path := Path(dir)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid := readPID(f)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another hasidecar agent (pid %d) is already running with state_dir %s; stop it first, or give this one its own state_dir", ErrHeld, pid, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write lock file %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write lock file %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock (the file stays; its pid is stale from then on).
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}

// Holder is the pid of the live agent holding dir's lock, 0 when none does
// (no lock file, or nobody holds it).
func Holder(dir string) int {
	f, err := os.Open(Path(dir))
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0
	}
	return readPID(f)
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
