package fsm

import (
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestOnlyRenewed(t *testing.T) {
	renew := func(lsn uint64) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, FlushLsn: lsn, Timeline: 1, DurationMs: 4000}}}
	}
	release := &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 1, Term: 1, Reason: "stopping"}}}
	event := &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{Type: "note", Ok: true, Details: "x"}}}
	promote := func(h *harness) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: "failover", LeaseSerial: h.m.State().Lease.Serial, LeaseMs: 4000}}}
	}
	cases := []struct {
		name   string
		before []*pb.Command                  // applied before the first state is taken
		cmds   func(h *harness) []*pb.Command // applied between the two states
		want   bool
	}{
		{"nothing applied", nil, func(*harness) []*pb.Command { return nil }, true},
		{"one renewal", nil, func(*harness) []*pb.Command { return []*pb.Command{renew(100)} }, true},
		{"renewals with new LSNs", nil, func(*harness) []*pb.Command { return []*pb.Command{renew(100), renew(200), renew(300)} }, true},
		{"a release", nil, func(*harness) []*pb.Command { return []*pb.Command{release} }, false},
		{"a renewal after a release (reclaim)", []*pb.Command{release}, func(*harness) []*pb.Command { return []*pb.Command{renew(100)} }, false},
		{"an event", nil, func(*harness) []*pb.Command { return []*pb.Command{event} }, false},
		{"a renewal and an event", nil, func(*harness) []*pb.Command { return []*pb.Command{renew(100), event} }, false},
		{"a promotion", nil, func(h *harness) []*pb.Command { return []*pb.Command{promote(h)} }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := threeNodes(t)
			for _, c := range tc.before {
				h.ok(c)
			}
			prev := h.m.State()
			for _, c := range tc.cmds(h) {
				h.ok(c)
			}
			cur := h.m.State()
			if got := OnlyRenewed(prev, cur); got != tc.want {
				t.Fatalf("OnlyRenewed = %v, want %v\nprev %v\ncur  %v", got, tc.want, prev.Lease, cur.Lease)
			}
		})
	}
	if OnlyRenewed(nil, &pb.ClusterState{}) || OnlyRenewed(&pb.ClusterState{}, nil) {
		t.Fatal("a nil state counts as different")
	}
}
