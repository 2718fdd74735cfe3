package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
)

// peerConnectParams bound how long a peer connection takes to notice a dead
// address and to come back after a heal. The lease (4 s by default) is
// renewed every lease/3 (1.33 s), each renewal within lease/3, and the
// primary fences fenceMargin (0.5 s) before its deadline, so after the last
// good renewal about 2.2 s remain for one to land. gRPC's defaults (20 s
// connect timeout, backoff up to 120 s) let one stuck attempt or one long
// backoff after a partition outlast that many times over: every renewal
// forwarded to the leader then failed until the backoff ended and a healthy
// primary got fenced.
//
//   - MinConnectTimeout 500 ms: a TCP (+TLS) handshake on the local networks
//     this runs on takes milliseconds; 500 ms still allows for a loaded
//     host, and two attempts fit into one renewal window.
//   - Backoff from 100 ms, ×1.6, capped at 1 s (±20 % jitter): a healed link
//     is used again within ~1.2 s even without a reset, less than the
//     1.33 s between renewals; a dead peer costs at most one SYN a second.
var peerConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 500 * time.Millisecond,
}

// peerPool caches one client connection per sidecar address.
type peerPool struct {
	opts []grpc.DialOption
	// readyWait: how long forLeader waits for a reset connection to
	// become ready before handing it out.
	readyWait time.Duration
	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn
	leader    string // the address of the last forLeader call
}

func newPeerPool(opts []grpc.DialOption) *peerPool {
	return newPeerPoolWith(opts, peerConnectParams)
}

func newPeerPoolWith(opts []grpc.DialOption, cp grpc.ConnectParams) *peerPool {
	return &peerPool{
		opts:      append(slices.Clip(opts), grpc.WithConnectParams(cp)),
		readyWait: cp.MinConnectTimeout,
		conns:     map[string]*grpc.ClientConn{},
	}
}

// get returns the connection to addr, made on first use.
func (p *peerPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to sidecar %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// forLeader is get for a proposal forwarded to the Raft leader at addr. It
// dials afresh when the leader changed since the last call, and it never
// hands out a connection sitting in TRANSIENT_FAILURE (where a call fails at
// once until its backoff ends, however healthy the leader is again): the
// backoff is reset so that it reconnects now, and the call waits for that
// attempt, up to readyWait and ctx.
func (p *peerPool) forLeader(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	changed := p.leader != addr
	p.leader = addr
	p.mu.Unlock()
	if changed {
		// A fresh connection to a new leader: the cached one may look
		// READY while its TCP connection is still in retransmission
		// backoff after a partition that healed (seconds, with no gRPC
		// keepalive able to notice sooner than 10 s): every renewal
		// forwarded over it would wait for its deadline.
		p.drop(addr)
	}
	c, err := p.get(addr)
	if err != nil {
		return nil, err
	}
	st := c.GetState()
	switch {
	case st == connectivity.TransientFailure || (changed && st != connectivity.Ready):
		c.ResetConnectBackoff()
	case st == connectivity.Idle:
		c.Connect()
	}
	if st = c.GetState(); st == connectivity.TransientFailure {
		wctx, cancel := context.WithTimeout(ctx, p.readyWait)
		defer cancel()
		for st == connectivity.TransientFailure && c.WaitForStateChange(wctx, st) {
			st = c.GetState()
		}
	}
	return c, nil
}

// drop closes and forgets the connection to addr (the next get dials
// afresh); calls in flight on it fail.
func (p *peerPool) drop(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		_ = c.Close()
		delete(p.conns, addr)
	}
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		_ = c.Close()
		delete(p.conns, a)
	}
}

// errLeaderChanged: a forwarded call was abandoned because another node
// became the Raft leader meanwhile; the caller retries at once.
var errLeaderChanged = errors.New("the raft leader changed during a forwarded call")

// leaderPoll is how often a forwarded call checks whether the leader it
// went to is still the leader.
const leaderPoll = 20 * time.Millisecond

// cancelOnLeaderChange returns a context cancelled with cause
// errLeaderChanged as soon as leader() no longer names addr: a proposal
// forwarded to a leader that was deposed (or cut off) stops waiting for
// its answer and goes to the new one.
func cancelOnLeaderChange(ctx context.Context, addr string, leader func() string) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(leaderPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-cctx.Done():
				return
			case <-t.C:
				if leader() != addr {
					cancel(errLeaderChanged)
					return
				}
			}
		}
	}()
	var once sync.Once
	return cctx, func() {
		once.Do(func() { close(done) })
		cancel(context.Canceled)
	}
}
