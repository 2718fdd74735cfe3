package pgctl

import (
	"context"
	"fmt"
	"io"
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
