package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// statusOf is the Status column cluster show gives node.
func statusOf(v *pb.ShowResponse, node string) string {
	for _, n := range v.Nodes {
		if n.Name == node {
			return n.Status
		}
	}
	return "(not listed)"
}

// TestTruthfulShow: cluster show states what is true now. Right after the
// primary's host dies it does not call it running; after the failover it
// calls it a failed former primary; right after a switchover neither the
// old primary is "failed" nor the new one "running (in recovery)".
func TestTruthfulShow(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 2, witness: true})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	s := &started{cluster: c, primary: primaryName(v)}
	old := s.primary

	c.lab.KillHost(c.node(old))
	killed := time.Now()
	w, err := c.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	st := statusOf(w, old)
	t.Logf("%s after the host kill: %s is %q", time.Since(killed).Round(time.Millisecond), old, st)
	if strings.Contains(st, "running") {
		t.Errorf("right after its host died, cluster show calls %s %q", old, st)
	}

	np := s.waitNewPrimary(old, 60*time.Second)
	eventually(t, 30*time.Second, old+" shown as a failed former primary", func() string {
		w, err := c.show("witness")
		if err != nil {
			return err.Error()
		}
		want := fmt.Sprintf("failed (former primary, term %d)", w.Term)
		if got := statusOf(w, old); got != want {
			return fmt.Sprintf("%s is %q, want %q", old, got, want)
		}
		if got := statusOf(w, np); got != "running" {
			return fmt.Sprintf("the new primary %s is %q", np, got)
		}
		return ""
	})

	c.start(old)
	eventually(t, 90*time.Second, old+" running again as a standby", func() string {
		w, err := c.show("witness")
		if err != nil {
			return err.Error()
		}
		if got := statusOf(w, old); got != "running" {
			return fmt.Sprintf("%s is %q", old, got)
		}
		return ""
	})
	v = c.waitHealthy(60 * time.Second)

	var to string
	for _, n := range v.Nodes {
		if n.Kind == pb.NodeKind_NODE_KIND_DATA && n.Name != np && n.Role == pb.NodeRole_NODE_ROLE_STANDBY {
			to = n.Name
		}
	}
	out, errOut, code := c.cli("switchover", "--addr", c.node("witness").GRPCAddr(), "--to", to)
	if code != 0 {
		t.Fatalf("switchover to %s: exit %d\n%s%s", to, code, out, errOut)
	}
	w, err = c.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	from, onto := statusOf(w, np), statusOf(w, to)
	t.Logf("right after the switchover: %s (old primary) %q, %s (new primary) %q", np, from, to, onto)
	if strings.HasPrefix(from, "failed") {
		t.Errorf("right after the switchover the old primary %s is %q", np, from)
	}
	if onto != "running" && onto != "promoting" {
		t.Errorf("right after the switchover the new primary %s is %q", to, onto)
	}
}
