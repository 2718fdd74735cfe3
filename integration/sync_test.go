package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestSynchronousMode: with synchronous: true the primary names its
// streaming standbys in synchronous_standby_names (ANY 1) only after the
// FSM committed them; a dead standby is taken out without stalling writes;
// and when the primary's host dies, *without* waiting for replication to
// catch up, the new primary holds every acknowledged write.
func TestSynchronousMode(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, tune: func(c *config.Config) {
		c.Synchronous = true
	}})
	syncSet := func(want ...string) func() string {
		sort.Strings(want)
		return func() string {
			v, err := s.showJSON("witness")
			if err != nil {
				return err.Error()
			}
			var got []string
			for _, n := range v.Nodes {
				if n.Sync {
					got = append(got, n.Name)
				}
			}
			sort.Strings(got)
			if !v.Synchronous || fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Sprintf("synchronous %v, set %v", v.Synchronous, got)
			}
			return ""
		}
	}
	ssn := func(node string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := s.connect(ctx, node)
		if err != nil {
			return err.Error()
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&v); err != nil {
			return err.Error()
		}
		return v
	}
	eventually(t, 30*time.Second, "both standbys in the synchronous set", syncSet("pg2", "pg3"))
	eventually(t, 10*time.Second, "pg1 waits for ANY 1 of them", func() string {
		if v := ssn("pg1"); v != `ANY 1 ("pg2", "pg3")` {
			return v
		}
		return ""
	})

	t.Run("a dead standby leaves the set, writes go on", func(t *testing.T) {
		s.lab.KillHost(s.node("pg3"))
		eventually(t, 30*time.Second, "pg3 out of the synchronous set", syncSet("pg2"))
		if v := ssn("pg1"); v != `ANY 1 ("pg2")` {
			t.Fatalf("synchronous_standby_names %q", v)
		}
		before := len(s.writer.ackedIDs())
		time.Sleep(2 * time.Second)
		if after := len(s.writer.ackedIDs()); after <= before {
			t.Fatalf("writes stalled: %d acknowledged before, %d after", before, after)
		}
		s.start("pg3")
		eventually(t, 60*time.Second, "pg3 back in the set", syncSet("pg2", "pg3"))
	})

	t.Run("primary host death loses no acknowledged write", func(t *testing.T) {
		acked := s.writer.ackedIDs() // no wait for catch-up: synchronous commit is the guarantee
		s.lab.KillHost(s.node("pg1"))
		np := s.waitNewPrimary("pg1", 40*time.Second)
		// Every write acknowledged up to the kill, not just those before it.
		s.writer.stop()
		all := s.writer.ackedIDs()
		s.assertHas(np, all)
		t.Logf("%d writes acknowledged in all (%d before the kill): all on %s", len(all), len(acked), np)
		other := "pg2"
		if np == "pg2" {
			other = "pg3"
		}
		eventually(t, 30*time.Second, "the new primary's synchronous set", syncSet(other))
		if fo := s.events(np, "failover"); len(fo) != 1 {
			t.Fatalf("failover events: %v", fo)
		}
		if v := ssn(np); !strings.Contains(v, other) {
			t.Fatalf("%s runs synchronous_standby_names %q", np, v)
		}
	})
	s.probe.check(t)
}

// TestSynchronousQuickSecondFailure: synchronous mode, four data nodes and
// a witness (five voters: two host deaths leave a quorum). The primary's
// host dies; as soon as the new primary acknowledges its first write, and a
// random 0–2 s later (SYNC_SEED replays a run; the seed is logged), the new
// primary's host dies too. A third node becomes primary and holds every
// acknowledged write: the promotion kept the surviving synchronous
// standbys in the set, the new primary waited for one of them before
// acknowledging anything, and the second failover promoted the most
// advanced of them.
func TestSynchronousQuickSecondFailure(t *testing.T) {
	seed := envUint(t, "SYNC_SEED", uint64(time.Now().UnixNano()))
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	delay := time.Duration(rng.Int64N(int64(2 * time.Second)))
	t.Logf("seed %d (replay: SYNC_SEED=%d): the second kill comes %s after the new primary's first acknowledged write", seed, seed, delay.Round(time.Millisecond))

	s := startWorkload(t, clusterOpts{standbys: 3, witness: true, tune: func(c *config.Config) {
		c.Synchronous = true
	}})
	inSet := func(v *showJSON) []string {
		var got []string
		for _, n := range v.Nodes {
			if n.Sync {
				got = append(got, n.Name)
			}
		}
		sort.Strings(got)
		return got
	}
	eventually(t, 60*time.Second, "the three standbys in the synchronous set", func() string {
		v, err := s.showJSON("witness")
		if err != nil {
			return err.Error()
		}
		if got := inSet(v); fmt.Sprint(got) != fmt.Sprint(s.standbys()) {
			return fmt.Sprintf("set %v", got)
		}
		return ""
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := s.clusterClient(s.node("witness").GRPCAddr()).Events(ctx, &pb.EventsRequest{})
		if err != nil {
			t.Logf("events: %v", err)
			return
		}
		for _, e := range resp.Events {
			t.Logf("event %s node %d ok %t: %s", e.Type, e.NodeId, e.Ok, e.Details)
		}
	})
	first := s.primary
	eventually(t, 10*time.Second, "acknowledged writes before the first kill", func() string {
		if len(s.writer.ackedIDs()) < 20 {
			return "fewer than 20"
		}
		return ""
	})

	kill1 := time.Now()
	s.lab.KillHost(s.node(first))
	// An answer the old primary sent just before it died may still be read
	// after KillHost returned; one second later (a failover takes at least
	// a lease) every acknowledgement is the new primary's.
	newAcks := time.Now().Add(time.Second)
	second := s.waitPrimaryExcept(40*time.Second, first)
	var firstAck time.Time
	eventually(t, 30*time.Second, "the new primary's first acknowledged write", func() string {
		s.writer.mu.Lock()
		defer s.writer.mu.Unlock()
		for _, at := range s.writer.ackAt {
			if at.After(newAcks) {
				firstAck = at
				return ""
			}
		}
		return "none yet"
	})
	v, err := s.showJSON("witness")
	if err != nil {
		t.Fatal(err)
	}
	if got := inSet(v); len(got) != 2 || slices.Contains(got, second) || slices.Contains(got, first) {
		t.Fatalf("synchronous set after the promotion of %s: %v, want the two other survivors", second, got)
	}
	t.Logf("%s primary and writable %s after the kill of %s (first acknowledged write at +%s); synchronous set %v",
		second, time.Since(kill1).Round(time.Millisecond), first, firstAck.Sub(kill1).Round(time.Millisecond), inSet(v))
	time.Sleep(time.Until(firstAck.Add(delay)))

	kill2 := time.Now()
	before := len(s.writer.ackedIDs())
	s.lab.KillHost(s.node(second))
	thirdAcks := time.Now().Add(time.Second) // as above
	third := s.waitPrimaryExcept(60*time.Second, first, second)
	t.Logf("%s primary and writable %s after the kill of %s (%d writes acknowledged before it)", third, time.Since(kill2).Round(time.Millisecond), second, before)
	eventually(t, 30*time.Second, "a write acknowledged by the third primary", func() string {
		s.writer.mu.Lock()
		defer s.writer.mu.Unlock()
		if n := len(s.writer.ackAt); n == 0 || !s.writer.ackAt[n-1].After(thirdAcks) {
			return "none yet"
		}
		return ""
	})
	s.writer.stop()
	all := s.writer.ackedIDs()
	s.assertHas(third, all)
	if fo := s.events(third, "failover"); len(fo) != 2 {
		t.Fatalf("failover events: %v", fo)
	}
	s.probe.check(t)
}

// waitPrimaryExcept waits until a node not in dead is the FSM's primary,
// running writable, as a surviving member reports, and returns its name.
func (s *started) waitPrimaryExcept(timeout time.Duration, dead ...string) string {
	s.t.Helper()
	var np string
	eventually(s.t, timeout, fmt.Sprintf("a primary other than %v", dead), func() string {
		last := "no survivor answers"
		for _, n := range s.lab.Nodes {
			if slices.Contains(dead, n.Name) {
				continue
			}
			v, err := s.show(n.Name)
			if err != nil {
				continue
			}
			for _, row := range v.Nodes {
				if row.Role == pb.NodeRole_NODE_ROLE_PRIMARY && !slices.Contains(dead, row.Name) && row.Postgres.GetRunning() && !row.Postgres.GetInRecovery() {
					np = row.Name
					return ""
				}
			}
			last = "primary is " + primaryName(v)
		}
		return last
	})
	return np
}
