package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
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
