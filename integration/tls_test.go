package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
	"github.com/hasidecar/hasidecar/internal/pki"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestSecurity attacks a cluster started with the lab's defaults (mutual
// TLS on, as everywhere) the way someone on the same network would, and
// checks after every attempt that it was refused with a clear error and
// that the cluster is unchanged: its members (names, addresses,
// conninfo, voters), term, paused flag and events, its Raft leader, and
// every sidecar still running.
func TestSecurity(t *testing.T) {
	c := witnessCluster(t, nil)
	c.start()
	leader := waitWitnessLeader(t, c)
	ld, follower := c.node(leader), c.node(otherThan(leader, "w1", "w2", "w3"))
	dir := c.lab.TLSDir()

	// Certificates an attacker might hold: none, one from another CA for
	// the same cluster and names, a valid node certificate of another node
	// (w9, issued by the cluster CA), the monitor's and the operator's.
	otherDir := filepath.Join(t.TempDir(), "other")
	if _, err := pki.Init(pki.InitOptions{Dir: otherDir, Cluster: "wit", Nodes: []pki.NodeSpec{{Name: "w2", Addrs: []string{"127.0.0.1"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueOne(dir, pki.RoleNode, "w9", []string{"127.0.0.1"}, 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	labCA := loadPool(t, filepath.Join(dir, pki.CACertFile))
	certOf := func(d, name string) tls.Certificate {
		cert, err := tls.LoadX509KeyPair(filepath.Join(d, pki.CertFile(name)), filepath.Join(d, pki.KeyFile(name)))
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	clientTLS := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: labCA, MinVersion: tls.VersionTLS13, ServerName: "127.0.0.1"}
	}
	foreign, w9, w3 := certOf(otherDir, "w2"), certOf(dir, "w9"), certOf(dir, "w3")
	monitor, operator := certOf(dir, pki.DefaultMonitor), certOf(dir, pki.DefaultOperator)

	before := clusterDigest(t, c, leader)
	unchanged := func(t *testing.T) {
		t.Helper()
		// Give a wrongly accepted command time to commit and apply.
		time.Sleep(time.Second)
		for _, n := range c.lab.Nodes {
			if !lab.Alive(n.PID()) {
				t.Fatalf("sidecar %s died", n.Name)
			}
		}
		if after := clusterDigest(t, c, leader); after != before {
			t.Fatalf("the cluster changed:\nbefore %s\nafter  %s", before, after)
		}
	}
	dial := func(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
		t.Helper()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	call := func(t *testing.T, what string, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s was accepted", what)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %q, want it to say %q", what, err, want)
		}
		t.Logf("%s refused: %v", what, err)
	}
	ctx := func() context.Context {
		cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		return cx
	}
	madeUpEvent, err := fsm.Encode(&pb.Command{AtUnixMs: 1, Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: 1, Type: "made_up", Ok: true}}})
	if err != nil {
		t.Fatal(err)
	}
	evilJoin := &pb.JoinRequest{ClusterName: "wit", Name: "w2", Kind: pb.NodeKind_NODE_KIND_WITNESS, RaftAddress: "127.0.0.1:1", GrpcAddress: "127.0.0.1:2"}

	t.Run("plaintext gRPC: pause, join, apply", func(t *testing.T) {
		conn := dial(t, ld.GRPCAddr(), insecure.NewCredentials())
		_, err := pb.NewClusterServiceClient(conn).SetPaused(ctx(), &pb.SetPausedRequest{Paused: true})
		call(t, "a plaintext SetPaused", err, "Unavailable")
		_, err = pb.NewPeerServiceClient(conn).Join(ctx(), evilJoin)
		call(t, "a plaintext Join", err, "Unavailable")
		_, err = pb.NewPeerServiceClient(conn).Apply(ctx(), &pb.ApplyRequest{Command: madeUpEvent})
		call(t, "a plaintext Apply", err, "Unavailable")
		// The CLI as an attacker without certificates runs it.
		_, errOut, code := c.cliPlain("pause", "--addr", ld.GRPCAddr(), "--rpc-timeout", "3s")
		if code != 1 || !strings.Contains(errOut, "mutual TLS") {
			t.Fatalf("plaintext `hasidecar pause`: exit %d, %s", code, errOut)
		}
		unchanged(t)
	})

	t.Run("plaintext Raft AppendEntries", func(t *testing.T) {
		err := appendEntries(t, nil, follower.RaftPort, "w1")
		call(t, "a plaintext AppendEntries", err, "")
		unchanged(t)
	})

	t.Run("certificate from another CA on both ports", func(t *testing.T) {
		conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(foreign)))
		_, err := pb.NewClusterServiceClient(conn).SetPaused(ctx(), &pb.SetPausedRequest{Paused: true})
		call(t, "SetPaused with another CA's certificate", err, "Unavailable")
		_, err = pb.NewPeerServiceClient(conn).Join(ctx(), evilJoin)
		call(t, "Join with another CA's certificate", err, "Unavailable")
		err = appendEntries(t, clientTLS(foreign), follower.RaftPort, "w2")
		call(t, "AppendEntries with another CA's certificate", err, "")
		unchanged(t)
	})

	t.Run("node certificate joining under another node's name", func(t *testing.T) {
		for _, cert := range []tls.Certificate{w9, w3} {
			conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(cert)))
			_, err := pb.NewPeerServiceClient(conn).Join(ctx(), evilJoin)
			call(t, "a Join as w2 with "+cert.Leaf.Subject.CommonName+"'s certificate", err, `may not join as "w2"`)
		}
		// At a follower too (it must not forward it to the leader).
		conn := dial(t, follower.GRPCAddr(), credentials.NewTLS(clientTLS(w9)))
		_, err := pb.NewPeerServiceClient(conn).Join(ctx(), evilJoin)
		call(t, "a Join as w2 at a follower", err, `may not join as "w2"`)
		unchanged(t)
	})

	t.Run("node certificate sending Raft RPCs under another server id", func(t *testing.T) {
		err := appendEntries(t, clientTLS(w3), follower.RaftPort, "w1")
		call(t, "AppendEntries as w1 with w3's certificate", err, "denied")
		err = appendEntries(t, clientTLS(w9), follower.RaftPort, "w1")
		call(t, "AppendEntries as w1 with w9's certificate", err, "denied")
		unchanged(t)
		if !logHas(follower.LogPath, `denied: raft RPC from "w3" claims server id "w1"`) {
			t.Fatalf("%s's log does not name the denied Raft RPC", follower.Name)
		}
	})

	t.Run("monitor certificate calling switchover and pause", func(t *testing.T) {
		conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(monitor)))
		_, err := pb.NewClusterServiceClient(conn).Switchover(ctx(), &pb.SwitchoverRequest{To: "w2"})
		call(t, "Switchover with the monitor certificate", err, `denied: "monitor" (monitor) may not call Switchover`)
		_, err = pb.NewClusterServiceClient(conn).SetPaused(ctx(), &pb.SetPausedRequest{Paused: true})
		call(t, "SetPaused with the monitor certificate", err, `may not call SetPaused`)
		// It may read.
		if _, err := pb.NewClusterServiceClient(conn).Show(ctx(), &pb.ShowRequest{}); err != nil {
			t.Fatalf("the monitor certificate cannot read: %v", err)
		}
		_, errOut, code := c.cliPlain("pause", "--addr", follower.GRPCAddr(), "--tls-ca", filepath.Join(dir, pki.CACertFile),
			"--tls-cert", filepath.Join(dir, pki.CertFile(pki.DefaultMonitor)), "--tls-key", filepath.Join(dir, pki.KeyFile(pki.DefaultMonitor)))
		if code != 1 || !strings.Contains(errOut, `denied: "monitor" (monitor) may not call SetPaused`) {
			t.Fatalf("`hasidecar pause` with the monitor certificate: exit %d, %s", code, errOut)
		}
		unchanged(t)
		if !logHas(ld.LogPath, `denied: "monitor" (monitor) may not call Switchover`) {
			t.Fatalf("%s's log does not name the denied call", ld.Name)
		}
	})

	t.Run("node certificate calling operator verbs", func(t *testing.T) {
		conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(w3)))
		_, err := pb.NewClusterServiceClient(conn).SetPaused(ctx(), &pb.SetPausedRequest{Paused: true})
		call(t, "SetPaused with a node certificate", err, `denied: "w3" (node) may not call SetPaused`)
		_, err = pb.NewClusterServiceClient(conn).RemoveNode(ctx(), &pb.RemoveNodeRequest{Name: "w2"})
		call(t, "RemoveNode with a node certificate", err, `may not call RemoveNode`)
		_, err = pb.NewPeerServiceClient(conn).Remove(ctx(), &pb.RemoveNodeRequest{Name: "w2"})
		call(t, "PeerService.Remove with a node certificate", err, `may not call Remove`)
		unchanged(t)
	})

	t.Run("operator certificate calling PeerService.Apply", func(t *testing.T) {
		conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(operator)))
		_, err := pb.NewPeerServiceClient(conn).Apply(ctx(), &pb.ApplyRequest{Command: madeUpEvent})
		call(t, "Apply with the operator certificate", err, `denied: "operator" (operator) may not call Apply`)
		unchanged(t)
	})

	t.Run("node certificate forwarding a command about another node", func(t *testing.T) {
		conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(w3)))
		for _, cmd := range []*pb.Command{
			{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: idOf(t, c, leader, "w1"), Type: "made_up"}}},
			{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Paused: ptr(true)}}},
			{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "wit", Name: "w2", Kind: pb.NodeKind_NODE_KIND_WITNESS, RaftAddress: "127.0.0.1:1", GrpcAddress: "127.0.0.1:2"}}},
		} {
			data, err := fsm.Encode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			_, err = pb.NewPeerServiceClient(conn).Apply(ctx(), &pb.ApplyRequest{Command: data})
			call(t, "a forwarded "+string(cmd.ProtoReflect().WhichOneof(cmd.ProtoReflect().Descriptor().Oneofs().ByName("cmd")).Name()), err, "denied")
		}
		unchanged(t)
	})

	t.Run("node certificate of a non-member forwarding a command", func(t *testing.T) {
		// w9 holds a valid node certificate but never joined.
		conn := dial(t, ld.GRPCAddr(), credentials.NewTLS(clientTLS(w9)))
		data, err := fsm.Encode(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "wit", Name: "w9", Kind: pb.NodeKind_NODE_KIND_WITNESS, RaftAddress: "127.0.0.1:1", GrpcAddress: "127.0.0.1:2"}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = pb.NewPeerServiceClient(conn).Apply(ctx(), &pb.ApplyRequest{Command: data})
		call(t, "a RegisterNode forwarded by a non-member", err, "is not a member of the Raft configuration")
		unchanged(t)
	})

	t.Run("certificate renewed without a restart", func(t *testing.T) {
		n := follower
		pid := n.PID()
		if _, err := pki.Renew(dir, n.Name, 20*24*time.Hour, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, n.Name+" serving the renewed certificate", func() string {
			out, errOut, code := c.cli("node", "check", "--addr", n.GRPCAddr())
			if !strings.Contains(out, "expires on") {
				return fmt.Sprintf("exit %d: %s %s", code, out, errOut)
			}
			if code != 1 {
				return fmt.Sprintf("node check exit %d, want 1 (WARNING): %s", code, out)
			}
			return ""
		})
		if n.PID() != pid || !lab.Alive(pid) {
			t.Fatalf("%s restarted", n.Name)
		}
		// It still talks to its peers and serves clients with the new one.
		conn := dial(t, n.GRPCAddr(), credentials.NewTLS(clientTLS(operator)))
		v, err := pb.NewClusterServiceClient(conn).Show(ctx(), &pb.ShowRequest{})
		if err != nil || v.RaftLeader == "" {
			t.Fatalf("show via %s after the renewal: %v %v", n.Name, v, err)
		}
		st, err := pb.NewNodeServiceClient(conn).Status(ctx(), &pb.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Until(time.Unix(st.TlsCertNotAfterUnix, 0)); left > 20*24*time.Hour || left < 19*24*time.Hour {
			t.Fatalf("%s reports its certificate ends in %s, want the renewed 20 days", n.Name, left)
		}
	})

	t.Run("operator pauses through a follower", func(t *testing.T) {
		// The follower sends the CLI to the leader, which checks the
		// operator's own certificate: this is the one change allowed.
		out, errOut, code := c.cli("pause", "--addr", follower.GRPCAddr())
		if code != 0 {
			t.Fatalf("operator pause via %s: exit %d: %s %s", follower.Name, code, out, errOut)
		}
		v, err := c.show(leader)
		if err != nil || !v.Paused {
			t.Fatalf("not paused after the operator's pause: %v %v", v, err)
		}
		if _, errOut, code := c.cli("unpause", "--addr", follower.GRPCAddr()); code != 0 {
			t.Fatalf("unpause: %s", errOut)
		}
	})
}

// TestTLSOffOnLoopback: tls.mode off runs on loopback, with a warning in
// the log; the same config on a network address is refused at start.
func TestTLSOffOnLoopback(t *testing.T) {
	c := witnessCluster(t, func(cfg *config.Config) {
		cfg.TLS = config.TLSConfig{Mode: config.TLSModeOff}
		cfg.Ctl = config.CtlConfig{}
	})
	c.start()
	waitWitnessLeader(t, c)
	w1 := c.node("w1")
	if !logHas(w1.LogPath, "tls.mode is off") {
		t.Fatal("no warning about tls.mode off in the log")
	}
	bad := *w1.Config
	bad.Raft.Listen = "0.0.0.0:" + itoa(w1.RaftPort)
	bad.Raft.Advertise = "192.0.2.1:" + itoa(w1.RaftPort)
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "off is allowed only when every listen address is loopback") {
		t.Fatalf("tls.mode off on a network address: %v", err)
	}
}

func waitWitnessLeader(t *testing.T, c *cluster) string {
	t.Helper()
	var leader string
	eventually(t, 30*time.Second, "three witnesses with a leader", func() string {
		v, err := c.show("w1")
		if err != nil {
			return err.Error()
		}
		if len(v.Nodes) != 3 || v.RaftLeader == "" {
			return "members " + itoa(len(v.Nodes)) + ", leader " + v.RaftLeader
		}
		for _, n := range v.Nodes {
			if !n.Voter {
				return n.Name + " is not a voter yet"
			}
		}
		leader = v.RaftLeader
		return ""
	})
	return leader
}

func otherThan(name string, names ...string) string {
	for _, n := range names {
		if n != name {
			return n
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }

func idOf(t *testing.T, c *cluster, ask, name string) uint32 {
	t.Helper()
	v, err := c.show(ask)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range v.Nodes {
		if n.Name == name {
			return n.Id
		}
	}
	t.Fatalf("no node %s", name)
	return 0
}

// clusterDigest is what an attack must not change, as the leader tells it:
// every member's row and Raft suffrage, the term, the paused flag, the
// events and the Raft leader. (The applied index moves with every routine
// commit, so it is not part of it.)
func clusterDigest(t *testing.T, c *cluster, leader string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.lab.Dial(c.node(leader).GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := pb.NewClusterServiceClient(conn)
	v, err := cs.Show(ctx, &pb.ShowRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := cs.Events(ctx, &pb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	type member struct {
		ID                   uint32
		Name, Conninfo, GRPC string
		Voter, Active        bool
		Kind                 pb.NodeKind
		Role                 pb.NodeRole
	}
	d := struct {
		Leader  string
		Term    uint64
		Paused  bool
		Members []member
		Events  []string
	}{Leader: v.RaftLeader, Term: v.Term, Paused: v.Paused}
	for _, n := range v.Nodes {
		d.Members = append(d.Members, member{n.Id, n.Name, n.Conninfo, n.GrpcAddress, n.Voter, n.Active, n.Kind, n.Role})
	}
	for _, e := range ev.Events {
		d.Events = append(d.Events, e.Type+"/"+itoa(int(e.NodeId))+"/"+e.Details)
	}
	b, _ := json.Marshal(d)
	return string(b)
}

// appendEntries sends one AppendEntries to a Raft port the way a peer
// would (raft's own transport), claiming server id id, at a high term, with
// an entry of three garbage bytes. cfg nil: plaintext TCP.
func appendEntries(t *testing.T, cfg *tls.Config, port int, id string) error {
	t.Helper()
	layer := &dialLayer{cfg: cfg}
	trans := raft.NewNetworkTransport(layer, 1, 3*time.Second, os.Stderr)
	defer trans.Close()
	addr := raft.ServerAddress("127.0.0.1:" + itoa(port))
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(addr)},
		Term:      99, PrevLogEntry: 0, PrevLogTerm: 0, LeaderCommitIndex: 1000,
		Entries: []*raft.Log{{Index: 1000, Term: 99, Type: raft.LogCommand, Data: []byte{0xff, 0xfe, 0x01}}},
	}
	var resp raft.AppendEntriesResponse
	// nil means raft handled the RPC: the peer was accepted, whatever raft
	// answered, which must not happen.
	return trans.AppendEntries(raft.ServerID(id), addr, req, &resp)
}

// dialLayer is a raft.StreamLayer that only dials (plaintext or TLS).
type dialLayer struct {
	cfg  *tls.Config
	once sync.Once
	done chan struct{}
}

func (d *dialLayer) Accept() (net.Conn, error) {
	d.once.Do(func() { d.done = make(chan struct{}) })
	<-d.done
	return nil, net.ErrClosed
}

func (d *dialLayer) Close() error {
	d.once.Do(func() { d.done = make(chan struct{}) })
	select {
	case <-d.done:
	default:
		close(d.done)
	}
	return nil
}
func (d *dialLayer) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (d *dialLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if d.cfg == nil {
		return net.DialTimeout("tcp", string(addr), timeout)
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(addr), d.cfg)
}

func loadPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", path)
	}
	return p
}

func logHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}
