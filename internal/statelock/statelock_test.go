package statelock

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestAcquireRelease(t *testing.T) {
	dir := t.TempDir()
	if got := Holder(dir); got != 0 {
		t.Fatalf("Holder of a dir without a lock file = %d, want 0", got)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file: a second open in this process
	// conflicts as another process's would.
	if got := Holder(dir); got != os.Getpid() {
		t.Fatalf("Holder = %d, want this process %d", got, os.Getpid())
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("second Acquire: %v, want ErrHeld", err)
	}
	want := fmt.Sprintf("another hasidecar agent (pid %d) is already running with state_dir %s", os.Getpid(), dir)
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("second Acquire: %q, want it to contain %q", err, want)
	}
	l.Release()
	if got := Holder(dir); got != 0 {
		t.Fatalf("Holder after Release = %d, want 0", got)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

// A holder that dies (SIGKILL) leaves its file behind but not its lock.
func TestDeadHolder(t *testing.T) {
	dir := t.TempDir()
	// -o: sleep does not inherit the lock; only flock(1) holds it.
	cmd := exec.Command("flock", "-x", "-o", Path(dir), "sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("flock(1): %v", err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := Acquire(dir)
		if errors.Is(err, ErrHeld) {
			break
		}
		if err == nil {
			l.Release() // flock(1) has not taken it yet
		}
		if time.Now().After(deadline) {
			t.Fatal("flock(1) never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	l.Release()
}
