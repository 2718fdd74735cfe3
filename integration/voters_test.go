package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/showdoc"
)

// voterZone spreads the lab's data nodes over three locations
// (pg1, pg4, pg7 in z1; pg2, pg5, pg8 in z2; pg3, pg6 in z3); the witness
// keeps its own.
func voterZone(c *config.Config) {
	c.Raft.VoterReplaceAfter = config.Duration(5 * time.Second)
	if c.Postgres == nil {
		return
	}
	var i int
	if _, err := fmt.Sscanf(c.Name, "pg%d", &i); err == nil {
		c.Location = fmt.Sprintf("z%d", (i-1)%3+1)
	}
	// Eight Postgres on two cores: small; enough WAL senders for seven
	// standbys, the lease gate and clones running at once.
	c.Postgres.Parameters = map[string]string{"shared_buffers": "16MB", "max_connections": "40", "max_wal_senders": "24"}
}

// voters lists the voters and the non-voters of a cluster show document.
func voters(v *showJSON) (yes, no []string) {
	for _, n := range v.Nodes {
		if n.Voter {
			yes = append(yes, n.Name)
		} else {
			no = append(no, n.Name)
		}
	}
	return yes, no
}

func nodeDoc(v *showJSON, name string) *showdoc.Node {
	for i := range v.Nodes {
		if v.Nodes[i].Name == name {
			return &v.Nodes[i]
		}
	}
	return nil
}

// TestVoterReplacement (issue 14, "Footprint and scale"): eight data nodes
// and a witness keep five Raft voters (raft.max_voters), the witness among
// them; two voters' hosts die (a standby and the witness), and after
// raft.voter_replace_after (5 s here) two healthy non-voters are promoted
// and the dead voters demoted, each recorded as an event; the cluster keeps
// its quorum (pause and unpause commit), and a failover after the
// primary's host dies still works, with no two writable nodes at once.
func TestVoterReplacement(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 7, witness: true, tune: voterZone})
	began := time.Now()
	c.start()
	v0 := c.waitHealthy(300 * time.Second)
	t.Logf("9 nodes healthy %s after the start", time.Since(began).Round(time.Second))
	primary := primaryName(v0)
	probe := c.startProber(primary)

	// Five voters, four non-voters; the witness votes.
	var doc *showJSON
	eventually(t, 60*time.Second, "5 voters (the witness one of them) and 4 non-voters", func() string {
		d, err := c.showJSON("pg1")
		if err != nil {
			return err.Error()
		}
		yes, no := voters(d)
		if len(yes) != 5 || len(no) != 4 || !slices.Contains(yes, "witness") {
			return fmt.Sprintf("voters %v, non-voters %v", yes, no)
		}
		doc = d
		return ""
	})
	yes, no := voters(doc)
	t.Logf("voters %v, non-voters %v", yes, no)
	// cluster show marks the non-voters in its table.
	if out, errOut, code := c.cli("cluster", "show", "--addr", c.node("pg1").GRPCAddr()); code != 0 || strings.Count(out, "(non-voter)") != 4 {
		t.Fatalf("cluster show (exit %d, %s) marks %d non-voters, want 4:\n%s", code, errOut, strings.Count(out, "(non-voter)"), out)
	}

	// Kill the witness and a standby voter (not the primary).
	var standby string
	for _, n := range yes {
		if n != "witness" && n != primary {
			standby = n
			break
		}
	}
	victims := []string{"witness", standby}
	var survivor string // a data node that stays up, to ask
	for _, n := range no {
		survivor = n
		break
	}
	addedBefore := len(c.events(survivor, fsm.EventVoterAdded))
	killed := time.Now()
	for _, n := range victims {
		c.lab.KillHost(c.node(n))
	}
	t.Logf("killed the hosts of %v (voters); primary %s", victims, primary)

	eventually(t, 60*time.Second, "the dead voters demoted, two non-voters promoted", func() string {
		d, err := c.showJSON(survivor)
		if err != nil {
			return err.Error()
		}
		yes, _ := voters(d)
		for _, n := range victims {
			if nd := nodeDoc(d, n); nd == nil || nd.Voter {
				return fmt.Sprintf("%s still a voter (voters %v)", n, yes)
			}
		}
		if len(yes) != 5 {
			return fmt.Sprintf("voters %v", yes)
		}
		doc = d
		return ""
	})
	replaced := time.Since(killed)
	yes, no = voters(doc)
	t.Logf("both dead voters replaced %s after the kill: voters %v, non-voters %v", replaced.Round(100*time.Millisecond), yes, no)
	if replaced < 5*time.Second {
		t.Fatalf("replaced after %s, sooner than voter_replace_after 5s", replaced)
	}
	demoted := c.events(survivor, fsm.EventVoterDemoted)
	for _, n := range victims {
		found := false
		for _, e := range demoted {
			found = found || (e.NodeName == n && strings.Contains(e.Details, "has been silent"))
		}
		if !found {
			t.Fatalf("no voter_demoted event for %s: %v", n, demoted)
		}
	}
	if added := c.events(survivor, fsm.EventVoterAdded); len(added)-addedBefore != 2 {
		t.Fatalf("%d voter_added events after the kill, want 2: %v", len(added)-addedBefore, added[addedBefore:])
	}

	// The quorum commits: pause and unpause.
	for _, verb := range []string{"pause", "unpause"} {
		if _, errOut, code := c.cli(verb, "--addr", c.node(survivor).GRPCAddr()); code != 0 {
			t.Fatalf("%s: exit %d: %s", verb, code, errOut)
		}
	}
	if ev := c.events(survivor, fsm.EventClusterUnpause); len(ev) == 0 {
		t.Fatal("no cluster_unpause event")
	}

	// The primary's host dies: a failover still happens.
	pv := nodeDoc(doc, primary).Voter
	killed = time.Now()
	c.lab.KillHost(c.node(primary))
	s := &started{cluster: c, primary: primary}
	np := s.waitNewPrimary(primary, 60*time.Second)
	t.Logf("%s promoted %s after the primary %s (voter: %v) died", np, time.Since(killed).Round(10*time.Millisecond), primary, pv)
	dead := append(slices.Clone(victims), primary)
	eventually(t, 60*time.Second, "five live voters", func() string {
		d, err := c.showJSON(np)
		if err != nil {
			return err.Error()
		}
		yes, _ := voters(d)
		for _, n := range yes {
			if slices.Contains(dead, n) {
				return fmt.Sprintf("dead %s still votes (voters %v)", n, yes)
			}
		}
		if len(yes) != 5 {
			return fmt.Sprintf("voters %v", yes)
		}
		return ""
	})
	if order := probe.check(t); len(order) != 2 || order[0] != primary || order[1] != np {
		t.Fatalf("writable nodes in order %v, want [%s %s]", order, primary, np)
	}
}
