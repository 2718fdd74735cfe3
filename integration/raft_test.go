package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/lab"
	"github.com/hasidecar/hasidecar/internal/pki"
)

// TestRaftGroup: three data sidecars and a witness as separate processes;
// cluster show --json lists all four with one Raft leader; SIGKILL of the
// leader's process gives a new leader within a few seconds; the killed node
// comes back with its state; a node of another cluster is refused.
func TestRaftGroup(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 2, witness: true})
	c.start()
	c.waitHealthy(90 * time.Second)

	v, err := c.showJSON("witness")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Nodes) != 4 {
		t.Fatalf("cluster show lists %d nodes, want 4: %+v", len(v.Nodes), v.Nodes)
	}
	kinds := map[string]string{}
	for _, n := range v.Nodes {
		kinds[n.Name] = n.Kind
	}
	for name, kind := range map[string]string{"pg1": "data", "pg2": "data", "pg3": "data", "witness": "witness"} {
		if kinds[name] != kind {
			t.Errorf("node %s: kind %q, want %q", name, kinds[name], kind)
		}
	}
	// Every member agrees on one leader. Leadership may move once on its
	// own (a primary that leads Raft hands it away 5 s after taking it):
	// agreement is asked of one round of answers, until it holds.
	var leader string
	eventually(t, 20*time.Second, "every member naming the same raft leader", func() string {
		leader = ""
		for _, n := range c.lab.Nodes {
			other, err := c.showJSON(n.Name)
			if err != nil {
				return err.Error()
			}
			switch {
			case other.RaftLeader == "":
				return n.Name + " knows no raft leader"
			case leader == "":
				leader = other.RaftLeader
			case other.RaftLeader != leader:
				return fmt.Sprintf("%s says the leader is %q, another member %q", n.Name, other.RaftLeader, leader)
			}
		}
		return ""
	})
	t.Logf("raft leader: %s (term %d)", leader, v.Term)

	// SIGKILL the leader's sidecar process.
	killed := c.node(leader)
	before := time.Now()
	c.lab.KillSidecar(killed)
	var newLeader string
	eventually(t, 15*time.Second, "a new raft leader", func() string {
		for _, n := range c.lab.Nodes {
			if n.Name == leader {
				continue
			}
			v, err := c.show(n.Name)
			if err != nil {
				return err.Error()
			}
			if v.RaftLeader != "" && v.RaftLeader != leader {
				newLeader = v.RaftLeader
				return ""
			}
		}
		return "the survivors still name " + leader
	})
	t.Logf("new raft leader %s after %s", newLeader, time.Since(before).Round(10*time.Millisecond))

	// The new leader has received no report yet; cluster show still knows
	// the survivors are up (it asks them) rather than calling them unreachable.
	if v, err := c.show(newLeader); err != nil {
		t.Fatal(err)
	} else {
		for _, n := range v.Nodes {
			if n.Name != leader && strings.HasPrefix(n.Status, "unreachable") {
				t.Errorf("right after the leader change, cluster show calls %s unreachable", n.Name)
			}
		}
	}

	// Restart it: it comes back from its state on disk (no join, no
	// bootstrap), sees the new leader and the same cluster.
	c.start(leader)
	eventually(t, 30*time.Second, "the restarted node back in the cluster", func() string {
		v, err := c.show(leader)
		if err != nil {
			return err.Error()
		}
		if v.AnsweredBy != newLeader && v.RaftLeader != newLeader {
			return "it names leader " + v.RaftLeader
		}
		if len(v.Nodes) != 4 || v.Cluster != "lab" {
			return "its view lacks members"
		}
		return ""
	})
	if !c.logContains(leader, "resuming from raft state on disk") {
		t.Errorf("%s did not resume from its raft state", leader)
	}
	c.waitHealthy(90 * time.Second)

	// A node that says it belongs to another cluster, with a certificate
	// of this one, is refused with a clear error, and the agent exits.
	dir := t.TempDir()
	if _, err := pki.IssueOne(c.lab.TLSDir(), pki.RoleNode, "intruder", []string{"127.0.0.1"}, 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	other := &config.Config{
		Cluster: "other", Name: "intruder", Kind: config.KindWitness, StateDir: filepath.Join(dir, "state"),
		Priority: config.DefaultPriority, Join: []string{c.node("pg1").GRPCAddr()},
		Raft: config.RaftConfig{Listen: "127.0.0.1:" + freePort(t)}, GRPC: config.ListenConfig{Listen: "127.0.0.1:" + freePort(t)},
	}
	c.lab.SetTLS(other)
	other.ApplyDefaults()
	b, err := other.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "intruder.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, "agent", "-c", path).CombinedOutput()
	if err == nil {
		t.Fatalf("an agent of another cluster joined: %s", out)
	}
	if !strings.Contains(string(out), `is the certificate of "intruder" (node) of cluster "lab", but this config is node "intruder" of cluster "other"`) {
		t.Fatalf("refusal does not say why:\n%s", out)
	}
	after, err := c.show("")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range after.Nodes {
		if n.Name == "intruder" {
			t.Fatal("the refused node was registered")
		}
	}
}

// witnessCluster is a lab of three witnesses (no Postgres), tuned.
func witnessCluster(t *testing.T, tune func(*config.Config)) *cluster {
	t.Helper()
	dir := t.TempDir()
	base := freeBase(t)
	l, err := lab.New(lab.Spec{Dir: filepath.Join(dir, "lab"), Standbys: 0, BasePort: base, Binary: binPath})
	if err != nil {
		t.Fatal(err)
	}
	l.Nodes = l.Nodes[:0]
	for i, name := range []string{"w1", "w2", "w3"} {
		n := &lab.Node{Name: name, Host: "127.0.0.1", Witness: true, Dir: filepath.Join(dir, "lab", name)}
		n.ConfigPath, n.LogPath = filepath.Join(n.Dir, "hasidecar.yaml"), filepath.Join(n.Dir, "hasidecar.log")
		n.GRPCPort, n.RaftPort = base+20+i, base+40+i
		cfg := &config.Config{Cluster: "wit", Name: name, Kind: config.KindWitness, StateDir: filepath.Join(n.Dir, "state"),
			Priority: config.DefaultPriority, Bootstrap: i == 0,
			Raft: config.RaftConfig{Listen: "127.0.0.1:" + itoa(n.RaftPort)}, GRPC: config.ListenConfig{Listen: n.GRPCAddr()}}
		if i > 0 {
			cfg.Join = []string{"127.0.0.1:" + itoa(base+20)}
		}
		l.SetTLS(cfg)
		if tune != nil {
			tune(cfg)
		}
		cfg.ApplyDefaults()
		n.Config = cfg
		l.Nodes = append(l.Nodes, n)
	}
	if err := l.Write(); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, lab: l}
	t.Cleanup(func() {
		_ = l.Down(10 * time.Second)
		if t.Failed() {
			c.dumpLogs()
		}
	})
	return c
}

// TestWitnessOnlyGroup: three witnesses form a Raft group without any
// Postgres; a SIGKILLed leader is replaced and comes back with its state.
// It runs without Postgres, so it runs everywhere.
func TestWitnessOnlyGroup(t *testing.T) {
	c := witnessCluster(t, nil)
	l := c.lab
	c.start()
	var leader string
	eventually(t, 30*time.Second, "three witnesses with one leader", func() string {
		v, err := c.show("w3")
		if err != nil {
			return err.Error()
		}
		if len(v.Nodes) != 3 || v.RaftLeader == "" {
			return "members or leader missing"
		}
		leader = v.RaftLeader
		return ""
	})
	c.lab.KillSidecar(c.node(leader))
	start := time.Now()
	eventually(t, 15*time.Second, "a new leader", func() string {
		for _, n := range l.Nodes {
			if n.Name == leader {
				continue
			}
			if v, err := c.show(n.Name); err == nil && v.RaftLeader != "" && v.RaftLeader != leader {
				return ""
			}
		}
		return "no new leader"
	})
	t.Logf("new leader after %s", time.Since(start).Round(10*time.Millisecond))
	c.start(leader)
	eventually(t, 20*time.Second, "the old leader back with its state", func() string {
		v, err := c.show(leader)
		if err != nil {
			return err.Error()
		}
		if v.Cluster != "wit" || len(v.Nodes) != 3 || v.RaftLeader == "" {
			return "incomplete view"
		}
		return ""
	})
}
