package node

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/config"
)

// TestRequireLeader: a leader-only call answers only once this leadership's
// Barrier is done (leaderReady closed), waits for it while it is open, and
// answers Unavailable (not_leader / no_leader, which callers retry) when
// the node is not, or stops being, the leader.
func TestRequireLeader(t *testing.T) {
	c := newTestCluster(t)
	l := c.leader(t)
	nodeOn := func(tn *testNode, ready chan struct{}) *Node {
		return &Node{raft: tn.raft, cfg: &config.Config{Name: tn.name}, fsm: newRaftFSM(hclog.NewNullLogger()), leaderReady: ready}
	}
	closed := make(chan struct{})
	close(closed)
	unavailable := func(err error) bool { return status.Code(err) == codes.Unavailable }

	for _, tc := range []struct {
		name    string
		node    *testNode
		ready   chan struct{}
		closeIn time.Duration // close ready after this (0: never)
		ctx     time.Duration
		ok      bool
		minWait time.Duration
	}{
		{name: "leader, barrier done", node: l, ready: closed, ctx: time.Second, ok: true},
		{name: "leader, barrier done while waiting", node: l, ready: make(chan struct{}), closeIn: 150 * time.Millisecond, ctx: 2 * time.Second, ok: true, minWait: 150 * time.Millisecond},
		{name: "leader, duties not started", node: l, ready: nil, ctx: 200 * time.Millisecond, minWait: 200 * time.Millisecond},
		{name: "leader, barrier not done", node: l, ready: make(chan struct{}), ctx: 200 * time.Millisecond, minWait: 200 * time.Millisecond},
		{name: "follower", node: c.follower(t), ready: closed, ctx: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodeOn(tc.node, tc.ready)
			if tc.closeIn > 0 {
				time.AfterFunc(tc.closeIn, func() { close(tc.ready) })
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			err := n.requireLeader(ctx)
			took := time.Since(start)
			if tc.ok != (err == nil) {
				t.Fatalf("requireLeader: %v, want ok=%v", err, tc.ok)
			}
			if took < tc.minWait {
				t.Fatalf("answered after %s, before %s", took, tc.minWait)
			}
			if !tc.ok && tc.node != l && !unavailable(err) {
				t.Fatalf("a follower answered %v, want Unavailable (not_leader)", err)
			}
		})
	}

	t.Run("leadership lost while waiting", func(t *testing.T) {
		l := c.leader(t)
		n := nodeOn(l, make(chan struct{}))
		errc := make(chan error, 1)
		go func() { errc <- n.requireLeader(context.Background()) }()
		time.Sleep(50 * time.Millisecond)
		if err := l.raft.LeadershipTransfer().Error(); err != nil {
			t.Fatalf("leadership transfer: %v", err)
		}
		select {
		case err := <-errc:
			if !unavailable(err) {
				t.Fatalf("after losing the leadership: %v, want Unavailable", err)
			}
			if _, ok := LeaderRedirect(err); !ok {
				if _, ok := NoLeaderYet(err); !ok {
					t.Fatalf("after losing the leadership: %v, want not_leader or no_leader", err)
				}
			}
		case <-time.After(3 * time.Second):
			t.Fatal("still waiting 3s after the leadership was handed away")
		}
	})
}
