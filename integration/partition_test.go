package integration

import (
	"testing"
	"time"
)

// Partitions between hosts, each node in a network namespace of its own
// (internal/lab/netns.go), with nftables rules inside a node's namespace.
// The client namespace (prober and writer) keeps its link to every node.

// TestPartitionIsolatePrimary (CHAOS.md isolate-primary): the primary is cut
// from all its peers but not from the client. Its commits stop (it fences
// within lease + 3 s), the majority promotes a standby, no write is
// accepted by two nodes at once, and after the heal the old primary rejoins.
func TestPartitionIsolatePrimary(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, netns: true})
	nw := s.lab.Spec.Net
	acked := s.caughtUpAcks()
	old := s.primary
	if err := nw.Partition(old, "pg2", "pg3", "witness"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	np := s.waitNewPrimary(old, 40*time.Second)
	t.Logf("%s promoted %s after %s was isolated", np, time.Since(cut).Round(10*time.Millisecond), old)
	s.assertHas(np, acked)
	s.assertTerm(np, 2)
	if err := nw.Heal(old); err != nil {
		t.Fatal(err)
	}
	s.followsOn(old, np, 2, 60*time.Second)
	s.writer.stop()
	s.probe.check(t)
	fenced := s.probe.lastAccepted(old).Sub(cut)
	t.Logf("the isolated primary accepted its last write %s after the cut", fenced.Round(10*time.Millisecond))
	if limit := 4*time.Second + 3*time.Second; fenced > limit {
		t.Errorf("the isolated primary accepted writes for %s after the cut, more than lease + 3 s", fenced)
	}
}

// TestPartitionSmallCluster (CHAOS.md bridge, split-s-a, split-s-b) on two
// data nodes and a witness.
func TestPartitionSmallCluster(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true, netns: true})
	nw := s.lab.Spec.Net
	noPromotion := func(t *testing.T, what string) {
		t.Helper()
		time.Sleep(10 * time.Second) // more than twice the lease
		s.assertTerm("witness", 1)
		v, err := s.show("witness")
		if err != nil {
			t.Fatal(err)
		}
		if p := primaryName(v); p != "pg1" {
			t.Fatalf("%s: primary is %s", what, p)
		}
	}

	t.Run("bridge: pg1 and pg2 cut, both see the witness", func(t *testing.T) {
		if err := nw.Partition("pg1", "pg2"); err != nil {
			t.Fatal(err)
		}
		noPromotion(t, "bridge")
		if err := nw.Heal("pg1"); err != nil {
			t.Fatal(err)
		}
		s.followsOn("pg2", "pg1", 1, 60*time.Second)
	})

	t.Run("split-s-a: pg2 alone, pg1 keeps the quorum with the witness", func(t *testing.T) {
		if err := nw.Partition("pg2", "pg1", "witness"); err != nil {
			t.Fatal(err)
		}
		noPromotion(t, "split-s-a")
		if err := nw.Heal("pg2"); err != nil {
			t.Fatal(err)
		}
		s.followsOn("pg2", "pg1", 1, 60*time.Second)
	})

	t.Run("split-s-b: pg1 alone, pg2 and the witness promote pg2", func(t *testing.T) {
		acked := s.caughtUpAcks()
		if err := nw.Partition("pg1", "pg2", "witness"); err != nil {
			t.Fatal(err)
		}
		np := s.waitNewPrimary("pg1", 40*time.Second)
		if np != "pg2" {
			t.Fatalf("new primary %s", np)
		}
		s.assertHas("pg2", acked)
		if err := nw.Heal("pg1"); err != nil {
			t.Fatal(err)
		}
		s.followsOn("pg1", "pg2", 2, 60*time.Second)
	})
	s.writer.stop()
	s.probe.check(t)
}
