package node

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func serveHealth(t *testing.T, addr string) *grpc.Server {
	t.Helper()
	var lis net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a stopped server may take a moment
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return srv
}

func check(ctx context.Context, c *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestPeerPoolRedialsTransientFailure: a connection left in reconnect
// backoff by a dead peer is used again as soon as the peer is back when a
// proposal is forwarded over it (forLeader), however long its backoff.
func TestPeerPoolRedialsTransientFailure(t *testing.T) {
	ctx := context.Background()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	srv := serveHealth(t, addr)

	// A backoff far longer than the test: only a reset reconnects.
	long := grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 30 * time.Second, Multiplier: 1.6, MaxDelay: 30 * time.Second}, MinConnectTimeout: 500 * time.Millisecond}
	p := newPeerPoolWith([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, long)
	defer p.close()
	c, err := p.forLeader(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(ctx, c); err != nil {
		t.Fatalf("first call: %v", err)
	}

	srv.Stop()
	// The next call finds the peer gone and leaves the connection in
	// TRANSIENT_FAILURE with a 30 s backoff.
	deadline := time.Now().Add(3 * time.Second)
	for c.GetState() != connectivity.TransientFailure {
		if time.Now().After(deadline) {
			t.Fatalf("state after the peer died: %v, want TRANSIENT_FAILURE", c.GetState())
		}
		if err := check(ctx, c); err == nil {
			t.Fatal("call to a stopped server succeeded")
		}
		time.Sleep(10 * time.Millisecond)
	}

	serveHealth(t, addr)
	// Through get (no reset) the connection still fails at once: this is
	// the stuck connection the renewals used to wait on.
	if c2, _ := p.get(addr); c2 != c {
		t.Fatal("get made a second connection")
	}
	if err := check(ctx, c); status.Code(err) != codes.Unavailable {
		t.Fatalf("call in backoff: %v, want Unavailable (the test cannot tell a reset from no reset)", err)
	}
	start := time.Now()
	c3, err := p.forLeader(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(ctx, c3); err != nil {
		t.Fatalf("forwarded call after the peer came back: %v (state %v)", err, c3.GetState())
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("reconnecting took %s, want well under the 30 s backoff", took)
	}
}

// TestPeerPoolLeaderChangeResets: a connection to a node that becomes the
// leader is reset when it is not ready.
func TestPeerPoolLeaderChangeResets(t *testing.T) {
	ctx := context.Background()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	long := grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 30 * time.Second, Multiplier: 1.6, MaxDelay: 30 * time.Second}, MinConnectTimeout: 500 * time.Millisecond}
	p := newPeerPoolWith([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, long)
	defer p.close()
	// Used for something else while nobody listens: in backoff.
	c, _ := p.get(addr)
	if err := check(ctx, c); status.Code(err) != codes.Unavailable {
		t.Fatalf("call to nobody: %v", err)
	}
	serveHealth(t, addr)
	if _, err := p.forLeader(ctx, "127.0.0.1:1"); err != nil { // another leader first
		t.Fatal(err)
	}
	c2, err := p.forLeader(ctx, addr) // then this one
	if err != nil {
		t.Fatal(err)
	}
	if err := check(ctx, c2); err != nil {
		t.Fatalf("forwarded call to the new leader: %v", err)
	}
}

func TestCancelOnLeaderChange(t *testing.T) {
	for _, tc := range []struct {
		name      string
		changeIn  time.Duration // 0: never
		wantCause error         // nil: still running after 300 ms
	}{
		{"leader stays", 0, nil},
		{"leader changes", 100 * time.Millisecond, errLeaderChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			var leader atomic.Value
			leader.Store("a:1")
			if tc.changeIn > 0 {
				time.AfterFunc(tc.changeIn, func() { leader.Store("b:1") })
			}
			ctx, cancel := cancelOnLeaderChange(context.Background(), "a:1", func() string { return leader.Load().(string) })
			defer cancel()
			select {
			case <-ctx.Done():
				if tc.wantCause == nil || !errors.Is(context.Cause(ctx), tc.wantCause) {
					t.Fatalf("cancelled with %v after %s, want %v", context.Cause(ctx), time.Since(start), tc.wantCause)
				}
				if took := time.Since(start); took > tc.changeIn+10*leaderPoll {
					t.Errorf("cancelled %s after the start, the change was at %s", took, tc.changeIn)
				}
			case <-time.After(300 * time.Millisecond):
				if tc.wantCause != nil {
					t.Fatal("not cancelled after the leader changed")
				}
			}
			cancel()
			if tc.wantCause == nil && !errors.Is(context.Cause(ctx), context.Canceled) {
				t.Errorf("cause after cancel: %v", context.Cause(ctx))
			}
		})
	}
}

// TestPeerPoolFreshDialForNewLeader: a proposal forwarded to a leader other
// than the last one gets a new connection, never the cached one (which may
// sit on a TCP connection still in retransmission backoff after a healed
// partition, READY as far as gRPC knows); the same leader keeps its
// connection; drop forgets one.
func TestPeerPoolFreshDialForNewLeader(t *testing.T) {
	ctx := context.Background()
	a, b := "127.0.0.1:1", "127.0.0.1:2"
	p := newPeerPool([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())})
	defer p.close()
	c1, err := p.forLeader(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := p.forLeader(ctx, a); again != c1 {
		t.Fatal("the same leader got a new connection")
	}
	if _, err := p.forLeader(ctx, b); err != nil {
		t.Fatal(err)
	}
	c2, err := p.forLeader(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 {
		t.Fatal("a leader elected again was handed the connection cached before")
	}
	if st := c1.GetState(); st != connectivity.Shutdown {
		t.Fatalf("the replaced connection is %s, want closed", st)
	}
	p.drop(a)
	if c3, _ := p.get(a); c3 == c2 {
		t.Fatal("drop kept the connection")
	}
}
