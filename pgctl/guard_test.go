package pgctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGuardWaitsForPostmaster: a guard started before the postmaster, with
// only the data directory, adopts the postmaster once it starts; armed with
// a deadline, it kills it when the deadline passes; a deadline already
// passed when the postmaster appears kills it at once; a pid line adopts
// the postmaster when postmaster.pid cannot; with the sidecar gone before
// any start it exits.
func TestGuardWaitsForPostmaster(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	n1 := newInstance(t, base, "n1")
	fromTemplate(t, n1)
	configure(t, n1)
	dir := n1.Options().DataDir

	// run starts a guard on dir (no pid) and returns its pipe and a
	// channel with its result and log.
	type result struct {
		err error
		log []string
	}
	runOn := func(dir string) (io.WriteCloser, <-chan result) {
		r, w := io.Pipe()
		out := make(chan result, 1)
		go func() {
			var mu sync.Mutex
			var lines []string
			err := RunGuard(ctx, 0, dir, r, nil, func(f string, a ...any) {
				mu.Lock()
				lines = append(lines, fmt.Sprintf(f, a...))
				mu.Unlock()
			})
			out <- result{err, lines}
		}()
		return w, out
	}
	run := func() (io.WriteCloser, <-chan result) { return runOn(dir) }
	wait := func(t *testing.T, out <-chan result, what string) result {
		t.Helper()
		select {
		case r := <-out:
			return r
		case <-time.After(20 * time.Second):
			t.Fatalf("the guard did not return: %s", what)
			return result{}
		}
	}
	send := func(w io.Writer, line string) {
		if _, err := io.WriteString(w, line); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("armed before the start, the deadline passes while it runs", func(t *testing.T) {
		w, out := run()
		defer w.Close()
		send(w, GuardLine(true, 4*time.Second))
		mustStart(t, n1)
		pid := n1.PID()
		r := wait(t, out, "after the deadline")
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !waitGone(pid, 5*time.Second) {
			t.Fatalf("postmaster %d still runs after the guard returned: %v", pid, r.log)
		}
		if len(r.log) != 2 || r.log[0] != fmt.Sprintf("pgguard: guarding the postmaster (pid %d) on %s", pid, dir) {
			t.Fatalf("guard log %q: want the adoption of pid %d, then the kill", r.log, pid)
		}
		<-n1.Exited()
	})
	t.Run("a deadline already passed kills the postmaster as it appears", func(t *testing.T) {
		w, out := run()
		defer w.Close()
		send(w, GuardLine(true, -time.Second))
		// The start may fail or succeed: the guard kills it either way.
		_ = n1.Start(ctx)
		r := wait(t, out, "a postmaster past its deadline")
		if r.err != nil {
			t.Fatal(r.err)
		}
		if pid, alive := PostmasterOn(dir); alive {
			if !waitGone(pid, 5*time.Second) {
				t.Fatalf("postmaster %d still runs: %v", pid, r.log)
			}
		}
		if len(r.log) != 2 {
			t.Fatalf("guard log %q: want the adoption, then the kill", r.log)
		}
		<-n1.Exited()
	})
	t.Run("told the pid when postmaster.pid cannot name it: guards it all the same", func(t *testing.T) {
		// A data directory path the guard cannot match (as if the
		// postmaster's working directory looked different): only the pid
		// line the sidecar sends after the start tells it.
		w, out := runOn(dir + "-elsewhere")
		defer w.Close()
		send(w, GuardLine(true, 2*time.Second))
		mustStart(t, n1)
		pid := n1.PID()
		send(w, fmt.Sprintf("pid %d\n", pid))
		r := wait(t, out, "after the deadline")
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !waitGone(pid, 5*time.Second) {
			t.Fatalf("postmaster %d still runs after the guard returned: %v", pid, r.log)
		}
		if len(r.log) != 2 {
			t.Fatalf("guard log %q: want the adoption, then the kill", r.log)
		}
		<-n1.Exited()
	})
	t.Run("the sidecar gone before any start: the guard exits, nothing killed", func(t *testing.T) {
		w, out := run()
		send(w, GuardLine(true, time.Minute))
		w.Close()
		if r := wait(t, out, "a closed pipe"); r.err != nil || len(r.log) != 0 {
			t.Fatalf("guard: %v, log %q; want a quiet exit", r.err, r.log)
		}
	})
	t.Run("disarmed: the postmaster runs on", func(t *testing.T) {
		w, out := run()
		send(w, "disarm\n")
		mustStart(t, n1)
		time.Sleep(300 * time.Millisecond)
		if !n1.Running() {
			t.Fatal("a disarmed guard stopped Postgres")
		}
		if err := n1.Stop(context.Background(), StopFast); err != nil {
			t.Fatal(err)
		}
		r := wait(t, out, "its postmaster stopped")
		w.Close()
		if r.err != nil || len(r.log) != 1 {
			t.Fatalf("guard: %v, log %q; want the adoption only", r.err, r.log)
		}
	})
}

// TestGuardDetachReattach: an adoptable guard (a control socket) outlives
// its sidecar: after a detach on its stdin the postmaster runs on; a
// second sidecar attaches over the socket, reads the guard's postmaster,
// deadline and term back, adopts the postmaster with a Controller of its
// own and re-arms the guard; when that sidecar goes without a detach (a
// crash) the guard keeps its last deadline and kills Postgres only when it
// passes.
func TestGuardDetachReattach(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	n1 := newInstance(t, base, "n1")
	fromTemplate(t, n1)
	configure(t, n1)
	dir := n1.Options().DataDir
	sock := filepath.Join(t.TempDir(), "guard", "pgguard.sock")

	var mu sync.Mutex
	var lines []string
	logged := func(sub string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, sub) {
				return true
			}
		}
		return false
	}
	r, w := io.Pipe()
	out := make(chan error, 1)
	go func() {
		out <- RunGuardWith(ctx, GuardConfig{DataDir: dir, In: r, Control: sock, Logf: func(f string, a ...any) {
			mu.Lock()
			lines = append(lines, fmt.Sprintf(f, a...))
			mu.Unlock()
		}})
	}()
	waitFor(t, 5*time.Second, "the control socket", func() (bool, string) {
		_, err := os.Stat(sock)
		return err == nil, fmt.Sprint(err)
	})
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %v mode %v, want 0600", err, st.Mode().Perm())
	}
	if st, err := os.Stat(filepath.Dir(sock)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("control socket directory mode %v, want 0700", st.Mode().Perm())
	}
	if _, err := io.WriteString(w, GuardArm(MonotonicNow()+int64(30*time.Second), 5)); err != nil {
		t.Fatal(err)
	}
	mustStart(t, n1)
	pid := n1.PID()
	waitFor(t, 5*time.Second, "the guard guarding the postmaster", func() (bool, string) {
		return logged(fmt.Sprintf("guarding the postmaster (pid %d)", pid)), "not yet"
	})

	// The first sidecar detaches and goes.
	if _, err := io.WriteString(w, "detach\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	waitFor(t, 5*time.Second, "the guard noticing no sidecar is attached", func() (bool, string) {
		return logged("no sidecar attached (detached: true)"), "not yet"
	})
	if !processAlive(pid) {
		t.Fatal("the postmaster died with the detached sidecar")
	}

	// The next one attaches and reads the guard's state back.
	gc, st, err := AttachGuard(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != pid || !st.Armed || st.Term != 5 || st.Left() <= 0 || st.Left() > 30*time.Second || st.GuardPID != os.Getpid() {
		t.Fatalf("guard status %+v (left %s): want pid %d, armed, term 5, deadline within 30 s, guard pid %d", st, st.Left(), pid, os.Getpid())
	}
	n2, err := New(n1.Options())
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Adopt(pid + 1); err == nil {
		t.Fatal("adopted a pid that postmaster.pid does not name")
	}
	if err := n2.Adopt(pid); err != nil {
		t.Fatal(err)
	}
	if !n2.Running() || n2.PID() != pid || n2.ForeignPostmaster() != 0 {
		t.Fatalf("after adoption: running %t pid %d foreign %d, want running %d, no foreign", n2.Running(), n2.PID(), n2.ForeignPostmaster(), pid)
	}
	if s, err := n2.Status(ctx); err != nil || s.InRecovery {
		t.Fatalf("status through the adopting controller: %v %+v", err, s)
	}
	// Re-armed by the new sidecar, which then dies without a detach: the
	// guard keeps the new deadline.
	if _, err := io.WriteString(gc, GuardArm(MonotonicNow()+int64(2*time.Second), 6)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	gc2, st2, err := AttachGuard(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	gc2.Close()
	if st2.Term != 6 || st2.Left() > 2*time.Second {
		t.Fatalf("guard status after the re-arm %+v: want term 6, deadline within 2 s", st2)
	}
	gc.Close()
	closed := time.Now()
	waitFor(t, 5*time.Second, "the guard noticing the crash", func() (bool, string) {
		return logged("no sidecar attached (detached: false)"), "not yet"
	})
	if time.Until(closed.Add(2*time.Second)) > 200*time.Millisecond && !processAlive(pid) {
		t.Fatal("the guard killed Postgres at the sidecar's crash, before its deadline")
	}
	select {
	case <-n2.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the adopted postmaster outlived the guard's deadline")
	}
	if err := <-out; err != nil {
		t.Fatal(err)
	}
	if !logged("the write deadline passed") {
		t.Fatalf("guard log %q: want the kill at the deadline", lines)
	}
	select {
	case <-gc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the attachment did not see the guard exit")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("control socket left behind: %v", err)
	}
}

// FuzzParseGuardStatus: the status line a guard sends on its control
// socket decodes or is refused; whatever decodes renders back the same.
func FuzzParseGuardStatus(f *testing.F) {
	f.Add("guard 123 1 99999999 7\n")
	f.Add("guard 0 0 0 0")
	f.Add("guard -1 2 x y")
	f.Fuzz(func(t *testing.T, line string) {
		st, err := ParseGuardStatus(line)
		if err != nil {
			return
		}
		again, err := ParseGuardStatus(st.line())
		if err != nil || again != st {
			t.Fatalf("%q → %+v → %q → %+v, %v", line, st, st.line(), again, err)
		}
	})
}
