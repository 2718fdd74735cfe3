package keeper

import (
	"context"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestWaitRound: a renewal of the lease the round planned on does not end
// the wait; any other change, the due time, or the context does.
func TestWaitRound(t *testing.T) {
	renew := &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, FlushLsn: 100, DurationMs: 4000}}}
	event := &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{Type: "note", Ok: true}}}
	release := &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 1, Term: 1, Reason: "test"}}}
	cases := []struct {
		name     string
		cmds     []*pb.Command // applied while it waits, one by one
		advance  time.Duration // then the clock moves this far
		cancel   bool          // then the context ends
		returns  bool          // it returns (with true unless cancel)
		afterCmd int           // …after this many of cmds (-1: not on a command)
	}{
		{"renewals only", []*pb.Command{renew, renew, renew}, 0, false, false, -1},
		{"renewals, then the due time", []*pb.Command{renew, renew}, time.Second, false, true, -1},
		{"an event", []*pb.Command{event}, 0, false, true, 1},
		{"a renewal, then a release", []*pb.Command{renew, release}, 0, false, true, 2},
		{"the context ends", []*pb.Command{renew}, 0, true, true, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, clk, lg, _ := primaryCluster(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			planned, valid := lg.State(), k.leaseValid()
			done := make(chan bool, 1)
			go func() { done <- k.waitRound(ctx, planned, valid, clk.Now().Add(time.Second)) }()
			returned := func(wait time.Duration) (bool, bool) {
				select {
				case v := <-done:
					return true, v
				case <-time.After(wait):
					return false, false
				}
			}
			for i, c := range tc.cmds {
				time.Sleep(10 * time.Millisecond) // let it reach its select
				lg.MustApply(t, c)
				if i+1 == tc.afterCmd {
					if ok, v := returned(5 * time.Second); !ok || !v {
						t.Fatalf("did not return true after command %d", i+1)
					}
					return
				}
				if ok, _ := returned(50 * time.Millisecond); ok {
					t.Fatalf("returned after command %d (%T), a renewal of the planned lease", i+1, c.Cmd)
				}
			}
			if tc.advance > 0 {
				clk.Advance(tc.advance)
			}
			if tc.cancel {
				cancel()
			}
			ok, v := returned(map[bool]time.Duration{true: 5 * time.Second, false: 100 * time.Millisecond}[tc.returns])
			if ok != tc.returns {
				t.Fatalf("returned %v, want %v", ok, tc.returns)
			}
			if ok && v == tc.cancel {
				t.Fatalf("returned %v with the context ended %v", v, tc.cancel)
			}
		})
	}
}
