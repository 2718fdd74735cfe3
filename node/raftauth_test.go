package node

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// --- certificates ---

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

var serial atomic.Int64

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf is a certificate for node name cn (CommonName) on 127.0.0.1.
func (ca *testCA) leaf(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) serverConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func (ca *testCA) clientConfig(cert tls.Certificate) func() *tls.Config {
	return func() *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, MinVersion: tls.VersionTLS12}
	}
}

// identifyCN is the test's certificate-to-node-name mapping.
func identifyCN(s tls.ConnectionState) (string, error) {
	if len(s.VerifiedChains) == 0 || len(s.VerifiedChains[0]) == 0 {
		return "", errors.New("no verified chain")
	}
	return s.VerifiedChains[0][0].Subject.CommonName, nil
}

// --- logs ---

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// --- a cluster of three ---

type recFSM struct {
	mu   sync.Mutex
	data [][]byte
}

func (f *recFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = append(f.data, append([]byte(nil), l.Data...))
	return nil
}

func (f *recFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *recFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

func (f *recFSM) has(d []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range f.data {
		if bytes.Equal(x, d) {
			return true
		}
	}
	return false
}

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// countingTransport counts the heartbeats that reach Raft's fast path.
type countingTransport struct {
	*authTransport
	heartbeats atomic.Int64
}

func (c *countingTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		c.authTransport.SetHeartbeatHandler(nil)
		return
	}
	c.authTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		c.heartbeats.Add(1)
		cb(rpc)
	})
}

type testNode struct {
	name  string
	addr  raft.ServerAddress
	trans *countingTransport
	raft  *raft.Raft
	fsm   *recFSM
}

type testCluster struct {
	ca    *testCA
	nodes []*testNode
	log   *syncBuffer
}

// newAuthTransportOn starts an authTransport for name on a free loopback port.
func newAuthTransportOn(t *testing.T, ca *testCA, name string, logger hclog.Logger) *authTransport {
	t.Helper()
	cert := ca.leaf(t, name)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newAuthTransport(tls.NewListener(ln, ca.serverConfig(cert)), ln.Addr(), ca.clientConfig(cert), identifyCN, logger.Named(name))
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{ca: newTestCA(t, "raftauth test CA"), log: &syncBuffer{}}
	logger := hclog.New(&hclog.LoggerOptions{Output: c.log, Level: hclog.Info})
	var servers []raft.Server
	for _, name := range []string{"n1", "n2", "n3"} {
		tr := &countingTransport{authTransport: newAuthTransportOn(t, c.ca, name, logger)}
		n := &testNode{name: name, addr: tr.LocalAddr(), trans: tr, fsm: &recFSM{}}
		c.nodes = append(c.nodes, n)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: n.addr})
	}
	for _, n := range c.nodes {
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(n.name)
		rc.Logger = logger.Named(n.name + "-raft")
		rc.HeartbeatTimeout = 300 * time.Millisecond
		rc.ElectionTimeout = 300 * time.Millisecond
		rc.LeaderLeaseTimeout = 150 * time.Millisecond
		rc.CommitTimeout = 10 * time.Millisecond
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(rc, n.fsm, store, store, raft.NewInmemSnapshotStore(), n.trans)
		if err != nil {
			t.Fatal(err)
		}
		n.raft = r
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			_ = n.raft.Shutdown().Error() // closes the transport (raft.WithClose)
			_ = n.trans.Close()
		}
		if t.Failed() {
			t.Logf("logs:\n%s", c.log.String())
		}
	})
	return c
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *testCluster) leader(t *testing.T) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range c.nodes {
			if n.raft.State() == raft.Leader {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (c *testCluster) follower(t *testing.T) *testNode {
	l := c.leader(t)
	for _, n := range c.nodes {
		if n != l {
			return n
		}
	}
	panic("no follower")
}

// applyAll applies data through the leader and waits until every FSM has it.
func (c *testCluster) applyAll(t *testing.T, data string) {
	t.Helper()
	waitFor(t, 10*time.Second, "apply "+data, func() bool {
		return c.leader(t).raft.Apply([]byte(data), time.Second).Error() == nil
	})
	for _, n := range c.nodes {
		waitFor(t, 5*time.Second, n.name+" applies "+data, func() bool { return n.fsm.has([]byte(data)) })
	}
}

func (n *testNode) term() string { return n.raft.Stats()["term"] }

// --- an attacker ---

// rawTransport is a plain raft.NetworkTransport dialling with cert: what a
// holder of a cluster certificate can run.
func rawTransport(t *testing.T, ca *testCA, cert tls.Certificate) *raft.NetworkTransport {
	t.Helper()
	adv := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &tlsStreamLayer{Listener: newIdleListener(adv), adv: adv, client: ca.clientConfig(cert)},
		MaxPool: 1,
		Timeout: 3 * time.Second,
		Logger:  hclog.NewNullLogger(),
	})
	t.Cleanup(func() { _ = nt.Close() })
	return nt
}

// TestRaftAuthCluster: three Raft servers over authTransport elect a leader
// and commit an entry on all three.
func TestRaftAuthCluster(t *testing.T) {
	c := newTestCluster(t)
	c.leader(t)
	c.applyAll(t, "hello")
	if s := c.log.String(); strings.Contains(s, "denied") {
		t.Fatalf("legitimate traffic was denied:\n%s", s)
	}
}

// TestRaftAuthSpoofedID: a peer with a valid certificate for n2 that claims
// to be n3 (or sends no id) is refused; the target is unchanged and works.
func TestRaftAuthSpoofedID(t *testing.T) {
	c := newTestCluster(t)
	c.applyAll(t, "before")
	garbage := []byte{0xde, 0xad, 0x01}
	for _, tc := range []struct {
		claim     string
		heartbeat bool // shaped as a heartbeat: raft's fast path
	}{{"n3", false}, {"", false}, {"n3", true}} {
		claim := tc.claim
		t.Run(fmt.Sprintf("claim=%q,heartbeat=%v", claim, tc.heartbeat), func(t *testing.T) {
			target := c.follower(t)
			term, last := target.term(), target.raft.LastIndex()
			attacker := rawTransport(t, c.ca, c.ca.leaf(t, "n2"))
			req := &raft.AppendEntriesRequest{
				RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(claim), Addr: []byte(c.nodes[2].addr)},
				Term:              99,
				PrevLogEntry:      0,
				PrevLogTerm:       0,
				Entries:           []*raft.Log{{Index: 1, Term: 99, Type: raft.LogCommand, Data: garbage}},
				LeaderCommitIndex: 1,
			}
			if tc.heartbeat {
				req.Entries, req.LeaderCommitIndex = nil, 0
			}
			var resp raft.AppendEntriesResponse
			err := attacker.AppendEntries(raft.ServerID(target.name), target.addr, req, &resp)
			if err == nil {
				t.Fatalf("spoofed AppendEntries accepted: %+v", resp)
			}
			t.Logf("attacker got: %v", err)
			if !strings.Contains(err.Error(), "raft rpc denied") {
				t.Errorf("error %q is not the refusal", err)
			}
			want := fmt.Sprintf("denied: raft RPC from %q claims server id %q", "n2", claim)
			waitFor(t, 2*time.Second, "the denial log line", func() bool { return strings.Contains(c.log.String(), want) })
			// A second RPC on the same transport (pooled or new connection)
			// fails too.
			if err := attacker.AppendEntries(raft.ServerID(target.name), target.addr, req, &resp); err == nil {
				t.Fatal("second spoofed AppendEntries accepted")
			}
			if got := target.term(); got != term {
				t.Errorf("target term %s -> %s", term, got)
			}
			if got := target.raft.LastIndex(); got != last {
				t.Errorf("target last index %d -> %d", last, got)
			}
			for _, n := range c.nodes {
				if n.fsm.has(garbage) {
					t.Errorf("%s applied the spoofed entry", n.name)
				}
			}
			c.applyAll(t, fmt.Sprintf("after %q %v", claim, tc.heartbeat))
		})
	}
}

// TestRaftAuthHandshakeRefused: plaintext and a certificate from another CA
// fail at the handshake; the target stays up.
func TestRaftAuthHandshakeRefused(t *testing.T) {
	c := newTestCluster(t)
	c.applyAll(t, "before")
	target := c.follower(t)

	t.Run("plaintext", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", string(target.addr), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// An AppendEntries type byte and garbage.
		if _, err := conn.Write([]byte("\x00garbage garbage garbage\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		for {
			if _, err = conn.Read(buf); err != nil {
				break
			}
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("plaintext connection still open after 5s")
		}
		t.Logf("plaintext client: %v", err)
	})

	t.Run("other CA", func(t *testing.T) {
		other := newTestCA(t, "another CA")
		wrong := other.leaf(t, "n2")
		// Trusts the server, and sends its certificate even though it is
		// not from a CA the server asks for.
		cfg := &tls.Config{RootCAs: c.ca.pool, MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &wrong, nil }}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", string(target.addr), cfg)
		if err == nil {
			// With TLS 1.3 the client's handshake completes before the
			// server has checked the client certificate; the alert arrives
			// on the first read.
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte{0})
			_, err = conn.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("wrong-CA connection still open after 5s")
		}
		t.Logf("wrong-CA client: %v", err)
	})

	waitFor(t, 2*time.Second, "handshake failures logged", func() bool {
		return strings.Count(c.log.String(), "TLS handshake failed") >= 2
	})
	c.applyAll(t, "after")
}

// TestRaftAuthHeartbeats: with a short heartbeat timeout the leader keeps
// its leadership and term for a few seconds, and heartbeats reach Raft's
// fast path on the followers.
func TestRaftAuthHeartbeats(t *testing.T) {
	c := newTestCluster(t)
	c.applyAll(t, "start")
	l := c.leader(t)
	term := l.term()
	var before []int64
	for _, n := range c.nodes {
		before = append(before, n.trans.heartbeats.Load())
	}
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if l.raft.State() != raft.Leader || l.term() != term {
			t.Fatalf("leadership lost: %s is %s in term %s (was %s)", l.name, l.raft.State(), l.term(), term)
		}
		for _, n := range c.nodes {
			if n.term() != term {
				t.Fatalf("%s moved to term %s (was %s)", n.name, n.term(), term)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, n := range c.nodes {
		got := n.trans.heartbeats.Load() - before[i]
		t.Logf("%s: %d heartbeats in 3s", n.name, got)
		if n != l && got < 10 {
			t.Errorf("follower %s handled only %d heartbeats in 3s", n.name, got)
		}
	}
}

// TestRaftAuthCloseNoLeak: Close ends every goroutine the transports
// started, including those of a connection stuck in its handshake and of a
// refused one.
func TestRaftAuthCloseNoLeak(t *testing.T) {
	baseline := runtime.NumGoroutine()
	func() {
		c := newTestCluster(t)
		c.applyAll(t, "x")
		target := c.nodes[0]
		// A connection that never handshakes.
		idle, err := net.Dial("tcp", string(target.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		// A refused one.
		attacker := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  &tlsStreamLayer{Listener: newIdleListener(idle.LocalAddr()), adv: idle.LocalAddr(), client: c.ca.clientConfig(c.ca.leaf(t, "n2"))},
			Timeout: 3 * time.Second,
			Logger:  hclog.NewNullLogger(),
		})
		var resp raft.AppendEntriesResponse
		if err := attacker.AppendEntries("n1", target.addr, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("n3"), Addr: []byte("127.0.0.1:1")}, Term: 99}, &resp); err == nil {
			t.Fatal("spoofed heartbeat accepted")
		}
		_ = attacker.Close()
		for _, n := range c.nodes {
			_ = n.raft.Shutdown().Error()
			_ = n.trans.Close()
		}
	}()
	start := time.Now()
	defer func() { t.Logf("goroutines back to %d within %v", baseline, time.Since(start)) }()
	deadline := start.Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRaftAuthIdentifyRefused: a verified certificate that identify cannot
// map to a node name gets no RPC through.
func TestRaftAuthIdentifyRefused(t *testing.T) {
	ca := newTestCA(t, "raftauth test CA")
	log := &syncBuffer{}
	cert := ca.leaf(t, "n1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := newAuthTransport(tls.NewListener(ln, ca.serverConfig(cert)), ln.Addr(), ca.clientConfig(cert),
		func(tls.ConnectionState) (string, error) { return "", errors.New("not a cluster node") },
		hclog.New(&hclog.LoggerOptions{Output: log}))
	defer tr.Close()
	attacker := rawTransport(t, ca, ca.leaf(t, "n2"))
	var resp raft.AppendEntriesResponse
	err = attacker.AppendEntries("n1", tr.LocalAddr(), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("n2")}, Term: 5}, &resp)
	if err == nil {
		t.Fatal("AppendEntries from an unidentified peer accepted")
	}
	select {
	case rpc := <-tr.Consumer():
		t.Fatalf("RPC from an unidentified peer reached the consumer: %#v", rpc.Command)
	case <-time.After(300 * time.Millisecond):
	}
	if !strings.Contains(log.String(), "no node name for the peer certificate") {
		t.Fatalf("refusal not logged:\n%s", log.String())
	}
}
