package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/internal/guardcmd"
	"github.com/hasidecar/hasidecar/internal/lab"
)

// restartSidecar stops a node's sidecar gracefully (SIGTERM, as systemctl
// restart does with KillMode=process) and starts it again at once. It
// returns when the new sidecar has adopted the postmaster, and reports how
// long the old one took to leave, how long from the SIGTERM to the
// adoption, and the lease left at the adoption (from the new sidecar's
// log; "" for a standby).
func (s *started) restartSidecar(name string) (stop, adopted time.Duration, left string) {
	s.t.Helper()
	n := s.node(name)
	before, _ := os.ReadFile(n.LogPath)
	t0 := time.Now()
	if err := s.lab.Stop(n, 30*time.Second); err != nil {
		s.t.Fatal(err)
	}
	stop = time.Since(t0)
	s.start(name)
	re := regexp.MustCompile(`adopted the postmaster the previous sidecar left running: [^\n]*?(?:deadline_in=(\S+))?\n`)
	eventually(s.t, 20*time.Second, name+" adopting its postmaster", func() string {
		b, _ := os.ReadFile(n.LogPath)
		if m := re.FindSubmatch(b[len(before):]); m != nil {
			adopted, left = time.Since(t0), string(m[1])
			return ""
		}
		return "not yet"
	})
	return stop, adopted, left
}

// TestSidecarRestart (issue 13): restarting the primary's sidecar, then a
// standby's, with a writer running, costs no failover: the postmasters
// keep their pids, the term stays, no promotion; the write gap is logged.
func TestSidecarRestart(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
	v, err := s.show("")
	if err != nil {
		t.Fatal(err)
	}
	term := v.Term
	for _, name := range []string{s.primary, s.standbys()[0]} {
		n := s.node(name)
		pm := n.PostmasterPID()
		from := time.Now()
		stop, adopted, left := s.restartSidecar(name)
		// Past two whole leases: the old sidecar's last deadline has long
		// passed, so a postmaster still running was renewed by the new one.
		time.Sleep(9 * time.Second)
		to := time.Now()
		t.Logf("%s's sidecar restarted: the old one left in %s, the new one adopted the postmaster %s after the SIGTERM (lease left at the adoption: %q); longest write gap %s",
			name, stop.Round(time.Millisecond), adopted.Round(time.Millisecond), left, s.writer.longestGap(from, to).Round(time.Millisecond))
		if got := n.PostmasterPID(); got != pm || !lab.Alive(pm) {
			t.Fatalf("%s: postmaster pid %d before the restart, %d after", name, pm, got)
		}
		if name == s.primary && left == "" {
			t.Fatalf("%s: the new sidecar adopted the primary without its lease", name)
		}
		s.waitHealthy(30 * time.Second)
		s.assertTerm(name, term)
		// One guard, still, and the small binary `make build` installs
		// beside the sidecar's (the harness builds both).
		guards := guardsOf(n.Config.StateDir)
		if len(guards) != 1 {
			t.Fatalf("%s: %d guards listen on its control socket after the restart (pids %v), want 1", name, len(guards), guards)
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", guards[0])); err != nil || filepath.Base(exe) != guardcmd.Binary {
			t.Fatalf("%s: its guard (pid %d) runs %q (%v), want %s", name, guards[0], exe, err, guardcmd.Binary)
		}
	}
	if ev := s.events(s.primary, "failover"); len(ev) != 0 {
		t.Fatalf("failover events: %v", ev)
	}
	if ev := s.events(s.primary, "standby_promote"); len(ev) != 0 {
		t.Fatalf("standby_promote events: %v", ev)
	}
	if ev := s.events(s.primary, "postgres_adopt"); len(ev) != 2 {
		t.Fatalf("postgres_adopt events: %v, want one per restart", ev)
	}
	acked := s.caughtUpAcks()
	s.writer.stop()
	s.assertHas(s.primary, acked)
	if order := s.probe.check(t); len(order) != 1 || order[0] != s.primary {
		t.Fatalf("writable nodes in order %v, want only %s", order, s.primary)
	}
}

// TestSidecarKillNoReturn (issue 13): the primary's sidecar is SIGKILLed
// and not restarted: its guard keeps the postmaster running until the
// lease deadline and kills it then, the leader promotes the standby after
// the lease and drift margin, and no two nodes accept writes at once.
func TestSidecarKillNoReturn(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
	acked := s.caughtUpAcks()
	old := s.primary
	pm := s.node(old).PostmasterPID()
	killed := time.Now()
	s.lab.KillSidecar(s.node(old))
	var gone time.Duration
	eventually(t, 10*time.Second, "the guard killing the orphaned primary", func() string {
		if lab.Alive(pm) {
			return "postmaster alive"
		}
		gone = time.Since(killed)
		return ""
	})
	np := s.waitNewPrimary(old, 30*time.Second)
	promoted := time.Since(killed)
	t.Logf("sidecar of %s killed: its postmaster gone after %s (seen by a poll), %s promoted after %s; %s last accepted a probe write %s after the kill",
		old, gone.Round(time.Millisecond), np, promoted.Round(time.Millisecond), old, s.probe.lastAccepted(old).Sub(killed).Round(time.Millisecond))
	if ev := s.events(np, "failover"); len(ev) != 1 {
		t.Fatalf("%d failover events, want 1: %v", len(ev), ev)
	}
	s.assertHas(np, acked)
	s.writer.stop()
	if order := s.probe.check(t); len(order) != 2 || order[0] != old || order[1] != np {
		t.Fatalf("writable nodes in order %v, want [%s %s]", order, old, np)
	}
}
