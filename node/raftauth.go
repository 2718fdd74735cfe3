package node

// An authenticating Raft transport.
//
// raft.NetworkTransport over mutual TLS lets any holder of a certificate
// from the cluster CA send RPCs that claim to come from any server: Raft
// believes the server id in the RPC header (RPCHeader.ID). authTransport
// binds the two together: every inbound connection is tied to the node name
// of the peer certificate it was verified with, and every RPC read from it
// must carry exactly that name as its header server id. An RPC that does not
// is never handed to Raft: it is answered with an error, logged
// ("denied: raft RPC from "pg2" claims server id "pg3""), and its connection
// is shut (no further RPC read from it is delivered, including RPCs already
// buffered behind it).
//
// Why it is safe:
//   - Identity comes only from the TLS handshake: the handshake must succeed
//     (with the listener's config, tls.RequireAndVerifyClientCert against the
//     cluster CA) and must have produced a verified chain; the name is what
//     identify returns for that verified state. Plaintext, wrong-CA and
//     certificate-less peers fail there and never reach Raft's decoder.
//   - The check is on every RPC (AppendEntries, heartbeats, RequestVote,
//     RequestPreVote, InstallSnapshot, TimeoutNow), both on the heartbeat
//     fast path and on the normal path; it is an exact byte comparison, and an
//     empty id or a command without an RPC header is refused (all our nodes
//     speak protocol version 3, which always sets RPCHeader.ID).
//   - RPC decoding is raft's own: each connection gets its own
//     raft.NetworkTransport whose stream layer hands out that one connection,
//     so every RPC decoded from a connection arrives on that transport's
//     Consumer channel or heartbeat handler, which only we read or set. Nothing
//     reaches Raft's consumer channel or heartbeat handler except through
//     allow.
//
// What it does not check, on purpose: membership in the Raft configuration.
// A lagging follower must accept AppendEntries and votes from a server that a
// newer configuration added but that it has not seen yet; refusing unknown
// ids would wedge it. The check is only that a peer cannot speak as another
// node. It does not authenticate RPCHeader.Addr (the advertised address) or
// the deprecated AppendEntriesRequest.Leader either: those are the sender's
// claim about where it listens, not about who it is.
//
// Outbound RPCs go through one raft.NetworkTransport whose stream layer only
// dials (tlsStreamLayer.Dial: ServerName is the host of the address, the
// server certificate is verified against the cluster CA). That side is
// unchanged by this file: it authenticates the address (the certificate's
// SANs), not that the server answering is the server id being called.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

const (
	// raftMaxPool and raftTimeout are the NetworkTransport settings the
	// sidecar uses (see newTransport).
	raftMaxPool = 3
	raftTimeout = 5 * time.Second
	// raftHandshakeTimeout bounds a TLS handshake on the Raft port.
	raftHandshakeTimeout = 10 * time.Second
	// raftDenyLinger is how long a connection whose RPC was refused may
	// stay open to carry the refusal back before it is closed regardless.
	raftDenyLinger = 2 * time.Second
)

// errRaftRPCDenied is wrapped in the error a refused RPC is answered with.
var errRaftRPCDenied = errors.New("raft rpc denied")

// authTransport is a raft.Transport (with raft.WithClose and
// raft.WithPreVote, like raft.NetworkTransport; NetworkTransport does not
// implement raft.WithPeers, so neither does this) whose inbound RPCs must
// carry the server id of the certificate they arrived with. See the comment
// at the top of the file.
type authTransport struct {
	ln       net.Listener
	adv      net.Addr
	identify func(tls.ConnectionState) (string, error)
	logger   hclog.Logger
	out      *raft.NetworkTransport // outbound RPCs only

	consumeCh chan raft.RPC // what Raft reads

	hbMu sync.Mutex
	hbFn func(raft.RPC) // set by Raft, may be nil

	shutdownCh chan struct{}
	closeOnce  sync.Once

	mu    sync.Mutex
	shut  bool
	conns map[*authConn]struct{} // accepted, not yet closed

	wg sync.WaitGroup // acceptLoop and one serve per connection
}

var (
	_ raft.Transport   = (*authTransport)(nil)
	_ raft.WithClose   = (*authTransport)(nil)
	_ raft.WithPreVote = (*authTransport)(nil)
)

// newAuthTransport serves Raft on ln, a listener whose connections are
// *tls.Conn (tls.NewListener with a config that requires and verifies client
// certificates), advertising adv; it dials peers with client. identify maps
// the state of a verified handshake to the peer's node name, which is the
// Raft server id the peer must use.
func newAuthTransport(ln net.Listener, adv net.Addr, client func() *tls.Config, identify func(tls.ConnectionState) (string, error), logger hclog.Logger) *authTransport {
	t := &authTransport{
		ln:         ln,
		adv:        adv,
		identify:   identify,
		logger:     logger,
		consumeCh:  make(chan raft.RPC),
		shutdownCh: make(chan struct{}),
		conns:      map[*authConn]struct{}{},
	}
	t.out = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &tlsStreamLayer{Listener: newIdleListener(adv), adv: adv, client: client},
		MaxPool: raftMaxPool,
		Timeout: raftTimeout,
		Logger:  logger,
	})
	t.wg.Add(1)
	go t.acceptLoop()
	return t
}

// Consumer implements raft.Transport.
func (t *authTransport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr implements raft.Transport.
func (t *authTransport) LocalAddr() raft.ServerAddress { return raft.ServerAddress(t.adv.String()) }

// SetHeartbeatHandler implements raft.Transport. Heartbeats are checked like
// every other RPC before cb sees them.
func (t *authTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.hbMu.Lock()
	t.hbFn = cb
	t.hbMu.Unlock()
}

// AppendEntriesPipeline implements raft.Transport.
func (t *authTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	return t.out.AppendEntriesPipeline(id, target)
}

// AppendEntries implements raft.Transport.
func (t *authTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.out.AppendEntries(id, target, args, resp)
}

// RequestVote implements raft.Transport.
func (t *authTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.out.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (t *authTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.out.RequestPreVote(id, target, args, resp)
}

// InstallSnapshot implements raft.Transport.
func (t *authTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	return t.out.InstallSnapshot(id, target, args, resp, data)
}

// TimeoutNow implements raft.Transport.
func (t *authTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.out.TimeoutNow(id, target, args, resp)
}

// EncodePeer implements raft.Transport.
func (t *authTransport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return t.out.EncodePeer(id, addr)
}

// DecodePeer implements raft.Transport.
func (t *authTransport) DecodePeer(buf []byte) raft.ServerAddress { return t.out.DecodePeer(buf) }

// Close implements raft.WithClose: it stops accepting, closes every inbound
// connection and the outbound transport, and waits for the goroutines it
// started. (The per-connection NetworkTransports' own goroutines end as
// their connection and stream layer are closed.)
func (t *authTransport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.shut = true
		conns := make([]*authConn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		close(t.shutdownCh)
		_ = t.ln.Close()
		for _, c := range conns {
			c.close()
		}
		_ = t.out.Close()
		t.wg.Wait()
	})
	return nil
}

func (t *authTransport) isShutdown() bool {
	select {
	case <-t.shutdownCh:
		return true
	default:
		return false
	}
}

func (t *authTransport) acceptLoop() {
	defer t.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.isShutdown() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, baseDelay), maxDelay)
			t.logger.Error("failed to accept raft connection", "error", err)
			select {
			case <-t.shutdownCh:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		c := &authConn{t: t, raw: conn, remote: conn.RemoteAddr().String(), closedCh: make(chan struct{})}
		t.mu.Lock()
		if t.shut {
			t.mu.Unlock()
			_ = conn.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go c.serve()
	}
}

// authConn is one inbound connection: its verified peer name and its own
// raft.NetworkTransport, which decodes the RPCs sent on it.
type authConn struct {
	t      *authTransport
	raw    net.Conn
	remote string
	name   string // peer node name; set before any RPC is read

	denied    atomic.Bool // an RPC was refused: refuse all that follow
	closeOnce sync.Once
	closedCh  chan struct{}
	mu        sync.Mutex
	lingerT   *time.Timer
}

// serve handshakes, identifies the peer, and then passes the RPCs decoded
// from the connection through allow until the connection or the transport
// closes.
func (c *authConn) serve() {
	t := c.t
	defer t.wg.Done()
	defer c.close()

	tc, ok := c.raw.(*tls.Conn)
	if !ok {
		t.logger.Error("refused raft connection: not TLS", "remote", c.remote)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), raftHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if !t.isShutdown() {
			t.logger.Warn("refused raft connection: TLS handshake failed", "remote", c.remote, "error", err)
		}
		return
	}
	state := tc.ConnectionState()
	if len(state.VerifiedChains) == 0 {
		// Only a listener that does not require and verify client
		// certificates gets here: refuse rather than trust an unverified one.
		t.logger.Error("refused raft connection: peer certificate not verified", "remote", c.remote)
		return
	}
	name, err := t.identify(state)
	if err != nil || name == "" {
		t.logger.Warn("refused raft connection: no node name for the peer certificate", "remote", c.remote, "error", err)
		return
	}
	c.name = name

	logger := t.logger.With("peer", name, "remote", c.remote)
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &oneConnLayer{conn: &ownedConn{Conn: tc, c: c}, adv: t.adv, done: make(chan struct{})},
		Timeout: raftTimeout,
		Logger:  logger,
	})
	defer nt.Close() // closes the stream layer and so the connection
	// Both paths out of nt go through allow. Until the handler is set, nt
	// sends heartbeats to its consumer channel, which is read below.
	nt.SetHeartbeatHandler(c.heartbeat)
	for {
		select {
		case rpc := <-nt.Consumer():
			if c.allow(rpc) {
				c.forward(rpc)
			}
		case <-c.closedCh:
			return
		case <-t.shutdownCh:
			return
		}
	}
}

// heartbeat is nt's heartbeat handler; it runs on nt's connection goroutine.
func (c *authConn) heartbeat(rpc raft.RPC) {
	if !c.allow(rpc) {
		return
	}
	c.t.hbMu.Lock()
	fn := c.t.hbFn
	c.t.hbMu.Unlock()
	if fn != nil {
		fn(rpc)
		return
	}
	c.forward(rpc)
}

// forward hands an allowed RPC to Raft.
func (c *authConn) forward(rpc raft.RPC) {
	select {
	case c.t.consumeCh <- rpc:
	case <-c.t.shutdownCh:
		rpc.Respond(nil, raft.ErrTransportShutdown)
	case <-c.closedCh:
		rpc.Respond(nil, raft.ErrTransportShutdown)
	}
}

// allow reports whether rpc may reach Raft: its header server id must equal
// the peer's node name, and no earlier RPC on the connection was refused. A
// refused RPC is answered with an error and the connection is shut.
func (c *authConn) allow(rpc raft.RPC) bool {
	if c.denied.Load() {
		rpc.Respond(nil, fmt.Errorf("%w: connection from %q already refused", errRaftRPCDenied, c.name))
		return false
	}
	claimed := ""
	h, ok := rpc.Command.(raft.WithRPCHeader)
	if ok {
		claimed = string(h.GetRPCHeader().ID)
	}
	if ok && claimed != "" && claimed == c.name {
		return true
	}
	c.deny()
	c.t.logger.Warn(fmt.Sprintf("denied: raft RPC from %q claims server id %q", c.name, claimed),
		"remote", c.remote, "rpc", fmt.Sprintf("%T", rpc.Command))
	rpc.Respond(nil, fmt.Errorf("%w: certificate is for %q, header claims server id %q", errRaftRPCDenied, c.name, claimed))
	return false
}

// deny marks the connection refused and shuts it: nothing more is read from
// the socket (RPCs already buffered are decoded but refused by allow), the
// refusal may still be written, and the connection is closed when raft's
// reader next fails or after raftDenyLinger, whichever is first.
func (c *authConn) deny() {
	if c.denied.Swap(true) {
		return
	}
	now := time.Now()
	_ = c.raw.SetReadDeadline(now)
	_ = c.raw.SetWriteDeadline(now.Add(raftDenyLinger))
	c.mu.Lock()
	c.lingerT = time.AfterFunc(raftDenyLinger, c.close)
	c.mu.Unlock()
}

// close closes the connection once; serve then tears down its transport.
func (c *authConn) close() {
	c.closeOnce.Do(func() {
		_ = c.raw.Close()
		close(c.closedCh)
		c.mu.Lock()
		if c.lingerT != nil {
			c.lingerT.Stop()
		}
		c.mu.Unlock()
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
}

// ownedConn is the connection as the per-connection NetworkTransport sees
// it: closing it (raft's reader does when it fails) closes the authConn.
type ownedConn struct {
	net.Conn
	c *authConn
}

func (o *ownedConn) Close() error {
	o.c.close()
	return nil
}

// oneConnLayer is the stream layer of a per-connection NetworkTransport:
// Accept hands out its one connection, then blocks until Close. It never
// dials.
type oneConnLayer struct {
	conn      net.Conn
	adv       net.Addr
	mu        sync.Mutex
	handed    bool
	done      chan struct{}
	closeOnce sync.Once
}

func (l *oneConnLayer) Accept() (net.Conn, error) {
	l.mu.Lock()
	first := !l.handed
	l.handed = true
	l.mu.Unlock()
	if first {
		select {
		case <-l.done:
		default:
			return l.conn, nil
		}
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnLayer) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		_ = l.conn.Close()
	})
	return nil
}

func (l *oneConnLayer) Addr() net.Addr { return l.adv }

func (l *oneConnLayer) Dial(raft.ServerAddress, time.Duration) (net.Conn, error) {
	return nil, errors.New("raft: inbound-only stream layer")
}

// idleListener accepts nothing: Accept blocks until Close. It is the
// listening half of the dial-only stream layer of the outbound transport.
type idleListener struct {
	adv       net.Addr
	done      chan struct{}
	closeOnce sync.Once
}

func newIdleListener(adv net.Addr) *idleListener {
	return &idleListener{adv: adv, done: make(chan struct{})}
}

func (l *idleListener) Accept() (net.Conn, error) {
	<-l.done
	return nil, net.ErrClosed
}

func (l *idleListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *idleListener) Addr() net.Addr { return l.adv }
