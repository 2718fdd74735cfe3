package integration

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hasidecar/hasidecar/internal/pki"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestNodeRemoveLive: `node remove` of a running standby tells it first: its
// sidecar stops Postgres cleanly and exits, its data directory stays as it
// was (no copy set aside, shut down cleanly), it is unregistered and its
// slot dropped, and its sidecar refuses to start again with the old state.
func TestNodeRemoveLive(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 2, witness: true})
	c.start()
	c.waitHealthy(120 * time.Second)
	victim := c.node("pg3")
	data := victim.Config.Postgres.DataDir
	if victim.PID() == 0 || victim.PostmasterPID() == 0 {
		t.Fatal("pg3 is not running")
	}

	out, errOut, code := c.cli("node", "remove", "--name", "pg3", "--addr", c.node("witness").GRPCAddr())
	t.Logf("node remove:\n%s%s", out, errOut)
	if code != 0 || !strings.Contains(out, "pg3: told to leave: Postgres stopped cleanly, data directory "+data+" kept as it was") || !strings.Contains(out, "removed from the cluster") {
		t.Fatalf("node remove pg3: exit %d\n%s%s", code, out, errOut)
	}
	eventually(t, 30*time.Second, "pg3's sidecar and Postgres gone", func() string {
		if victim.PID() != 0 || victim.PostmasterPID() != 0 {
			return "still running"
		}
		return ""
	})
	if !c.logContains("pg3", "leaving the cluster: stopping Postgres cleanly") {
		t.Error("pg3's log does not say it left")
	}
	cd, err := exec.Command(filepath.Join(pgBinDir, "pg_controldata"), data).CombinedOutput()
	if err != nil || !strings.Contains(string(cd), "shut down in recovery") {
		t.Fatalf("pg3's data directory is not cleanly shut down: %v\n%s", err, cd)
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		t.Fatalf("pg3's data directory: %v", err)
	}
	if aside, _ := filepath.Glob(data + ".old-*"); len(aside) != 0 {
		t.Fatalf("a copy was set aside: %v", aside)
	}
	v, err := c.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v.Nodes {
		if n.Name == "pg3" {
			t.Fatal("pg3 still registered")
		}
	}
	eventually(t, 15*time.Second, "pg3's slot dropped", func() string {
		n, err := c.queryInt(primaryName(v), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'hasidecar_pg3'")
		if err != nil {
			return err.Error()
		}
		if n != 0 {
			return "slot still there"
		}
		return ""
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, binPath, "agent", "-c", victim.ConfigPath).CombinedOutput()
	if err == nil || !strings.Contains(string(b), `this sidecar left cluster`) {
		t.Fatalf("restarting the removed sidecar: %v, want a refusal naming the LEFT marker:\n%s", err, b)
	}
}

// TestJoinRolledBack: a join that Raft accepts but whose registration fails
// (here: its gRPC address is another member's) is rolled back — the server
// leaves the Raft configuration again, where it would count towards the
// quorum with no row anyone sees — and cluster show lists no unregistered
// Raft member.
func TestJoinRolledBack(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 1, witness: true})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	leader := c.node(v.RaftLeader)
	dir := c.lab.TLSDir()
	if _, err := pki.IssueOne(dir, pki.RoleNode, "pg9", []string{"127.0.0.1"}, 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.CertFile("pg9")), filepath.Join(dir, pki.KeyFile("pg9")))
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: loadPool(t, filepath.Join(dir, pki.CACertFile)),
		MinVersion: tls.VersionTLS13, ServerName: "127.0.0.1"})
	conn, err := grpc.NewClient(leader.GRPCAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pb.NewPeerServiceClient(conn).Join(ctx, &pb.JoinRequest{
		ClusterName: v.Cluster, Name: "pg9", Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100,
		RaftAddress: "127.0.0.1:" + freePort(t), GrpcAddress: c.node("pg2").GRPCAddr(),
	})
	if err == nil || !strings.Contains(err.Error(), "already used by node") {
		t.Fatalf("join of pg9 with pg2's gRPC address: %v, want a refusal naming the conflict", err)
	}
	t.Logf("join refused: %v", err)
	if !c.logContains(leader.Name, "server-id=pg9") {
		t.Fatal("the leader's log shows no Raft configuration change for pg9: the join never reached Raft")
	}
	if !c.logContains(leader.Name, "join rolled back: the raft server is removed again") {
		t.Fatal("the leader's log does not say the join was rolled back")
	}
	eventually(t, 10*time.Second, "no unregistered Raft member", func() string {
		for _, n := range []string{"pg1", "pg2", "witness"} {
			v, err := c.show(n)
			if err != nil {
				return err.Error()
			}
			if len(v.UnregisteredRaftServers) > 0 {
				return n + " sees unregistered Raft members " + strings.Join(v.UnregisteredRaftServers, ",")
			}
		}
		return ""
	})
	out, _, code := c.cli("cluster", "show", "--addr", leader.GRPCAddr())
	if code != 0 || strings.Contains(out, "WARNING") {
		t.Fatalf("cluster show: exit %d\n%s", code, out)
	}
}
