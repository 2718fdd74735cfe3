package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// raftParts is what setupRaft builds; close releases them in order.
type raftParts struct {
	raft      *raft.Raft
	transport raftTransport
	store     *raftboltdb.BoltStore
	hasState  bool
}

func (p *raftParts) close() {
	if p.raft != nil {
		_ = p.raft.Shutdown().Error()
	}
	if p.transport != nil {
		_ = p.transport.Close()
	}
	if p.store != nil {
		_ = p.store.Close()
	}
}

// setupRaft opens the log and stable store (raft-boltdb/v2), the file
// snapshot store and the TCP transport under the state dir, and starts Raft.
// It does not bootstrap or join: see bootstrapOrJoin.
func (n *Node) setupRaft() (*raftParts, error) {
	dir := filepath.Join(n.cfg.StateDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir %s: %w", dir, err)
	}
	p := &raftParts{}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w (is another sidecar using this state_dir?)", filepath.Join(dir, "raft.db"), err)
	}
	p.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, n.logger.Named("raft"))
	if err != nil {
		return nil, fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	var identify func(tls.ConnectionState) (string, error)
	if n.tls != nil {
		identify = n.identifyNode
	}
	trans, err := n.newTransport(identify)
	if err != nil {
		return nil, err
	}
	p.transport = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.Logger = n.logger.Named("raft")
	rc.HeartbeatTimeout = n.cfg.Raft.HeartbeatTimeout.D()
	rc.ElectionTimeout = n.cfg.Raft.ElectionTimeout.D()
	rc.LeaderLeaseTimeout = min(rc.HeartbeatTimeout, 500*time.Millisecond)
	// An idle leader sends followers an AppendEntries (with the commit
	// index) every CommitTimeout to 2× it, on top of the heartbeats: at
	// hashicorp/raft's 50 ms that was a third of an idle leader's CPU and
	// as much again on every follower. Followers learn the commit of every
	// command but the lease renewal at once, pushed by a barrier
	// (applyLocal, fsm.Urgent); a renewal's reaches them within 2 ×
	// raftCommitTimeout (the leader's decider reads its own). 250 ms
	// measured 0.7 % of a core less for the lab at rest than 100 ms, but
	// a leader elected after the old one died with the primary counts the
	// lease from its own, later apply: 100 ms keeps that within 0.2 s.
	rc.CommitTimeout = raftCommitTimeout
	rc.SnapshotThreshold = n.cfg.Raft.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.Raft.SnapshotInterval.D()
	rc.TrailingLogs = 1024
	rc.NotifyCh = n.leaderNotify
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft settings: %w", err)
	}
	p.hasState, err = raft.HasExistingState(store, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	// The leader reads the entry before each follower's next index for
	// every AppendEntries, also the empty ones sent every CommitTimeout:
	// from bolt that is a read and a msgpack decode per follower 10–20
	// times a second, most of an idle leader's CPU. The newest entries
	// are kept in memory.
	logs, err := raft.NewLogCache(raftLogCache, store)
	if err != nil {
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	p.raft = r
	n.fsm.setLeaderFunc(r.LeaderWithID)
	ok = true
	return p, nil
}

// raftCommitTimeout: see setupRaft.
const raftCommitTimeout = 100 * time.Millisecond

// raftLogCache is how many of the newest Raft log entries are kept in
// memory (setupRaft).
const raftLogCache = 256

// raftTransport is what newTransport builds.
type raftTransport interface {
	raft.Transport
	raft.WithClose
}

// newTransport builds the Raft transport. With TLS on it is authTransport
// (raftauth.go): identify maps a verified peer certificate to the node name
// that the peer's RPCs must carry as server id; without it the Raft port is
// not opened (fail closed).
func (n *Node) newTransport(identify func(tls.ConnectionState) (string, error)) (raftTransport, error) {
	adv, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAdvertise())
	if err != nil {
		return nil, fmt.Errorf("raft.advertise %s: %w", n.cfg.RaftAdvertise(), err)
	}
	if n.tls != nil && identify == nil {
		return nil, errors.New("raft over TLS: no mapping from peer certificates to node names")
	}
	ln, err := net.Listen("tcp", n.cfg.Raft.Listen)
	if err != nil {
		return nil, fmt.Errorf("raft.listen %s: %w (is another process using the port?)", n.cfg.Raft.Listen, err)
	}
	if n.tls != nil {
		return newAuthTransport(tls.NewListener(ln, n.tls.ServerConfig()), adv, func() *tls.Config { return n.tls.ClientConfig(n.cfg.Cluster) }, identify, n.logger.Named("raft-net")), nil
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &tcpStreamLayer{Listener: ln, adv: adv},
		MaxPool: raftMaxPool,
		Timeout: raftTimeout,
		Logger:  n.logger.Named("raft-net"),
	}), nil
}

type tcpStreamLayer struct {
	net.Listener
	adv net.Addr
}

func (t *tcpStreamLayer) Addr() net.Addr { return t.adv }

func (t *tcpStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(addr), timeout)
}

type tlsStreamLayer struct {
	net.Listener
	adv    net.Addr
	client func() *tls.Config
}

func (t *tlsStreamLayer) Addr() net.Addr { return t.adv }

func (t *tlsStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	cfg := t.client()
	if host, _, err := net.SplitHostPort(string(addr)); err == nil {
		cfg.ServerName = host
	}
	return tls.DialWithDialer(d, "tcp", string(addr), cfg)
}

// bootstrapOrJoin makes a fresh node part of a cluster: it joins through the
// configured members, or, with bootstrap set and no member answering, starts
// a new single-voter cluster. A node with Raft state does neither.
func (n *Node) bootstrapOrJoin(ctx context.Context, hasState bool) error {
	if hasState {
		n.logger.Info("resuming from raft state on disk")
		return nil
	}
	if len(n.cfg.Join) > 0 {
		// With a join list, a bootstrap node starts a new cluster only on
		// positive evidence that there is none: members that answer and
		// belong to no cluster. Unreachable members prove nothing (this
		// node may have lost its state while the cluster lives on), so it
		// waits for them.
		for {
			err := n.joinOnce(ctx)
			if err == nil {
				return nil
			}
			var refused *joinRefusedError
			if errors.As(err, &refused) {
				return err
			}
			if n.cfg.Bootstrap && errors.Is(err, errAllFresh) {
				break
			}
			n.logger.Info("waiting for a cluster member to accept the join", "join", n.cfg.Join, "error", err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("join %v: %w", n.cfg.Join, ctx.Err())
			case <-time.After(time.Second):
			}
		}
	}
	n.logger.Info("bootstrapping a new cluster", "cluster", n.cfg.Cluster)
	f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter,
		ID:       raft.ServerID(n.cfg.Name),
		Address:  raft.ServerAddress(n.cfg.RaftAdvertise()),
	}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	return nil
}

// joinRefusedError is a join that a member answered with a refusal (another
// cluster's name, another system identifier): retrying cannot help.
type joinRefusedError struct{ msg string }

func (e *joinRefusedError) Error() string { return e.msg }
