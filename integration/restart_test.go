package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestRestartPending (issue 13): `config set` of a setting that needs a
// restart marks every data node pending_restart, and `hasidecar restart
// --pending` applies it under a writer: the standbys one at a time, then a
// switchover (which restarts the former primary as a standby). Every node
// runs the new value and none is pending; exactly one promotion; no
// acknowledged write lost; never two writable nodes (the prober). Then the
// new primary alone, `restart --node`: in place, no promotion. Then
// lowering max_connections 150 → 120: the primary first, in place, then
// the standbys, no promotion, every node on 120 and streaming.
func TestRestartPending(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true})
	addr := s.node("witness").GRPCAddr()
	if _, errOut, code := s.cli("config", "set", "--addr", addr, "postgresql.parameters.max_connections=150"); code != 0 {
		t.Fatalf("config set: exit %d: %s", code, errOut)
	}
	data := s.lab.DataNodes()
	eventually(t, 30*time.Second, "every data node pending a restart for max_connections", func() string {
		v, err := s.show("witness")
		if err != nil {
			return err.Error()
		}
		for _, n := range v.Nodes {
			if n.Kind == pb.NodeKind_NODE_KIND_DATA && !slices.Contains(n.GetPostgres().GetPendingRestart(), "max_connections") {
				return n.Name + " is not pending"
			}
		}
		return ""
	})

	began := time.Now()
	out, errOut, code := s.cli("restart", "--addr", addr, "--pending", "--yes", "--timeout", "3m")
	took := time.Since(began)
	rolling := out
	t.Logf("restart --pending took %.1fs:\n%s", took.Seconds(), out)
	if code != 0 {
		t.Fatalf("restart --pending: exit %d: %s", code, errOut)
	}
	v, err := s.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	primary := primaryName(v)
	if primary == s.primary || primary == "" {
		t.Fatalf("primary after the rolling restart: %q (was %s): want a switchover to a standby", primary, s.primary)
	}
	s.assertTerm("witness", 2) // one promotion: the switchover
	if ev := s.events("witness", fsm.EventFailover); len(ev) != 0 {
		t.Fatalf("failover events %v: want none", ev)
	}
	if ev := s.events("witness", fsm.EventStandbyPromote); len(ev) != 1 {
		t.Fatalf("standby_promote events %v: want one", ev)
	}
	for _, n := range v.Nodes {
		if n.Kind == pb.NodeKind_NODE_KIND_DATA && len(n.GetPostgres().GetPendingRestart()) != 0 {
			t.Fatalf("%s still pending after the restart: %v", n.Name, n.GetPostgres().GetPendingRestart())
		}
	}
	var others []string
	for _, n := range data {
		got, err := s.queryInt(n.Name, "SELECT current_setting('max_connections')::int")
		if err != nil || got != 150 {
			t.Fatalf("%s: max_connections %d (%v), want 150", n.Name, got, err)
		}
		if n.Name != primary {
			others = append(others, n.Name)
		}
	}
	s.followsOn(s.primary, primary, 2, 60*time.Second)

	// The primary alone, in place: writes pause, no promotion.
	inPlace := time.Now()
	out, errOut, code = s.cli("restart", "--addr", addr, "--node", primary, "--yes")
	t.Logf("restart --node %s (the primary, in place) took %.1fs:\n%s", primary, time.Since(inPlace).Seconds(), out)
	if code != 0 || !strings.Contains(out, "in place") {
		t.Fatalf("restart --node %s: exit %d, %q %q", primary, code, out, errOut)
	}
	s.assertTerm("witness", 2)
	if v, err := s.show("witness"); err != nil || primaryName(v) != primary {
		t.Fatalf("after the in-place restart: primary %q (%v), want %s", primaryName(v), err, primary)
	}
	inPlaceEnd := time.Now()

	// Lowering max_connections (150 → 120): a standby may not run it lower
	// than its primary, so `restart --pending` restarts the primary first,
	// in place, then the standbys; no switchover.
	if _, errOut, code := s.cli("config", "set", "--addr", addr, "postgresql.parameters.max_connections=120"); code != 0 {
		t.Fatalf("config set max_connections=120: exit %d: %s", code, errOut)
	}
	eventually(t, 30*time.Second, "every data node pending a restart for max_connections=120", func() string {
		v, err := s.show("witness")
		if err != nil {
			return err.Error()
		}
		for _, n := range v.Nodes {
			if n.Kind == pb.NodeKind_NODE_KIND_DATA && !slices.Contains(n.GetPostgres().GetPendingRestart(), "max_connections") {
				return n.Name + " is not pending"
			}
		}
		return ""
	})
	lowering := time.Now()
	out, errOut, code = s.cli("restart", "--addr", addr, "--pending", "--yes", "--timeout", "3m")
	loweringTook := time.Since(lowering)
	t.Logf("restart --pending lowering max_connections took %.1fs:\n%s", loweringTook.Seconds(), out)
	if code != 0 {
		t.Fatalf("restart --pending (lowering): exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(out, "lowering max_connections 150 → 120") || !strings.Contains(out, "[1/3] restarting the primary "+primary+" in place") ||
		strings.Contains(out, "switching over") {
		t.Fatalf("restart --pending (lowering) did not restart the primary first:\n%s", out)
	}
	s.assertTerm("witness", 2) // no promotion
	eventually(t, 30*time.Second, "every node on max_connections 120, standbys streaming, nothing pending", func() string {
		v, err := s.show("witness")
		if err != nil {
			return err.Error()
		}
		for _, n := range v.Nodes {
			if n.Kind != pb.NodeKind_NODE_KIND_DATA {
				continue
			}
			pg := n.GetPostgres()
			if len(pg.GetPendingRestart()) != 0 || (n.Name != primary && pg.GetWalReceiverStatus() != "streaming") {
				return n.Name + ": " + n.Status
			}
			if got, err := s.queryInt(n.Name, "SELECT current_setting('max_connections')::int"); err != nil || got != 120 {
				return fmt.Sprintf("%s: max_connections %d (%v)", n.Name, got, err)
			}
		}
		return ""
	})
	s.writer.stop()
	t.Logf("longest write gap during the rolling restart: %s; during the in-place restart: %s; while lowering: %s",
		s.writer.longestGap(began, began.Add(took)).Round(time.Millisecond), s.writer.longestGap(inPlace, inPlaceEnd).Round(time.Millisecond),
		s.writer.longestGap(lowering, lowering.Add(loweringTook)).Round(time.Millisecond))
	s.waitCaughtUp(primary, others...)
	s.assertHas(primary, s.writer.ackedIDs())
	s.probe.check(t, s.primary, primary)
	if !strings.Contains(rolling, "switching over from "+s.primary) {
		t.Fatalf("the progress does not name the switchover: %q", out)
	}
}

// TestStandbyRestartWhileLowering: `config set` lowers max_connections
// (100 → 80) and a standby's Postgres dies before anything was restarted.
// Its pg_control still holds the primary's 100, and Postgres refuses to
// start a standby lower than that; the keeper starts it with 100 instead
// (pending_restart shows the 80 it waits for), and `restart --pending`
// then brings every node to 80, the primary first.
func TestStandbyRestartWhileLowering(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 2})
	c.start()
	v := c.waitHealthy(90 * time.Second)
	primary := primaryName(v)
	standby := otherThan(primary, "pg1", "pg2", "pg3")
	addr := c.node(primary).GRPCAddr()
	if _, errOut, code := c.cli("config", "set", "--addr", addr, "postgresql.parameters.max_connections=80"); code != 0 {
		t.Fatalf("config set max_connections=80: exit %d: %s", code, errOut)
	}
	pending := func(want []string) func() string {
		return func() string {
			v, err := c.showJSON(primary)
			if err != nil {
				return err.Error()
			}
			var wrong []string
			for _, n := range v.Nodes {
				if slices.Contains(want, n.Name) != slices.Contains(n.PendingRestart, "max_connections") {
					wrong = append(wrong, fmt.Sprintf("%s: pending %v", n.Name, n.PendingRestart))
				}
			}
			return strings.Join(wrong, "; ")
		}
	}
	eventually(t, 20*time.Second, "every node pending_restart max_connections", pending([]string{"pg1", "pg2", "pg3"}))

	pm := c.node(standby).PostmasterPID()
	c.lab.KillPostgres(c.node(standby))
	killed := time.Now()
	eventually(t, 45*time.Second, standby+" back in recovery and streaming after its Postgres died", func() string {
		if now := c.node(standby).PostmasterPID(); now == 0 || now == pm {
			return fmt.Sprintf("postmaster %d", now)
		}
		v, err := c.show(primary)
		if err != nil {
			return err.Error()
		}
		for _, n := range v.Nodes {
			if n.Name == standby {
				if pg := n.GetPostgres(); !pg.GetInRecovery() || pg.GetWalReceiverStatus() != "streaming" {
					return n.Status
				}
				return ""
			}
		}
		return standby + " not listed"
	})
	t.Logf("%s back, streaming, %s after its Postgres was killed", standby, time.Since(killed).Round(10*time.Millisecond))
	if got, err := c.queryInt(standby, "SELECT current_setting('max_connections')::int"); err != nil || got != 100 {
		t.Fatalf("%s: max_connections %d (%v), want the primary's 100 until the primary restarts", standby, got, err)
	}
	if !c.logContains(standby, "starting the standby with settings raised to what its primary last ran") {
		t.Errorf("%s's log does not say it raised max_connections", standby)
	}
	eventually(t, 20*time.Second, standby+" pending_restart max_connections again", pending([]string{"pg1", "pg2", "pg3"}))

	out, errOut, code := c.cli("restart", "--addr", addr, "--pending", "--yes", "--timeout", "3m")
	t.Logf("restart --pending:\n%s", out)
	if code != 0 || !strings.Contains(out, "[1/3] restarting the primary "+primary+" in place") {
		t.Fatalf("restart --pending: exit %d: %s %s", code, out, errOut)
	}
	eventually(t, 30*time.Second, "every node on max_connections 80, nothing pending", func() string {
		if msg := pending(nil)(); msg != "" {
			return msg
		}
		for _, n := range []string{"pg1", "pg2", "pg3"} {
			if got, err := c.queryInt(n, "SELECT current_setting('max_connections')::int"); err != nil || got != 80 {
				return fmt.Sprintf("%s: max_connections %d (%v)", n, got, err)
			}
		}
		return ""
	})
}
