package fsm

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func reclone(c *pb.SetNeedsReclone) *pb.Command {
	return &pb.Command{Cmd: &pb.Command_SetNeedsReclone{SetNeedsReclone: c}}
}

// TestNeedsReclone: the primary marks a standby whose slot it drops (an
// event says why); a marked standby is no failover candidate and cannot
// register as a standby until it clears its own mark after a clone.
func TestNeedsReclone(t *testing.T) {
	h := threeNodes(t)
	for _, tc := range []struct {
		name string
		cmd  *pb.SetNeedsReclone
		code Code
	}{
		{"not from the primary", &pb.SetNeedsReclone{Term: 1, PrimaryId: 2, NodeId: 3, NeedsReclone: true}, CodeInvalidTransition},
		{"stale term", &pb.SetNeedsReclone{Term: 0, PrimaryId: 1, NodeId: 3, NeedsReclone: true}, CodeStaleTerm},
		{"the witness", &pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 4, NeedsReclone: true}, CodeInvalidCommand},
		{"the primary itself", &pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 1, NeedsReclone: true}, CodeInvalidTransition},
		{"unknown node", &pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 9, NeedsReclone: true}, CodeUnknownNode},
		{"a clear that names a primary", &pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 3}, CodeInvalidCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := h.apply(reclone(tc.cmd)); !errors.Is(r.Err, &Error{Code: tc.code}) {
				t.Fatalf("error %v, want %s", r.Err, tc.code)
			}
		})
	}
	h.ok(reclone(&pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 3, NeedsReclone: true, Reason: "its slot was inactive for 31m, past slot_retention 30m"}))
	pg3 := NodeByID(h.m.State(), 3)
	if !pg3.NeedsReclone || !strings.Contains(pg3.NeedsRecloneReason, "slot_retention") {
		t.Fatalf("pg3 after the mark: needs_reclone %v, reason %q", pg3.NeedsReclone, pg3.NeedsRecloneReason)
	}
	evs := h.m.State().Events
	if last := evs[len(evs)-1]; last.Type != EventNeedsReclone || last.NodeId != 3 || !strings.Contains(last.Details, "slot_retention") {
		t.Fatalf("last event %v, want needs_reclone about pg3 with the reason", last)
	}
	cands, skipped := Promotable(h.m.State())
	if len(cands) != 1 || cands[0].Name != "pg2" || !strings.Contains(skipped["pg3"], "needs a re-clone") {
		t.Fatalf("candidates %v, skipped %v: want only pg2, pg3 skipped for its re-clone", cands, skipped)
	}
	// It cannot follow again before the clone...
	if r := h.apply(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 3, UpstreamId: 1, Term: 1, EventType: EventNodeRejoin}}}); !errors.Is(r.Err, &Error{Code: CodeInvalidTransition}) {
		t.Fatalf("SetStandby of a marked node: %v, want invalid_transition", r.Err)
	}
	// ...and, cleared by itself after it, can.
	h.ok(reclone(&pb.SetNeedsReclone{Term: 1, NodeId: 3}))
	if pg3 := NodeByID(h.m.State(), 3); pg3.NeedsReclone || pg3.NeedsRecloneReason != "" {
		t.Fatalf("pg3 after the clear: %v %q", pg3.NeedsReclone, pg3.NeedsRecloneReason)
	}
	evs = h.m.State().Events
	if last := evs[len(evs)-1]; last.Type != EventRecloned {
		t.Fatalf("last event %v, want %s", last, EventRecloned)
	}
	h.ok(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 3, UpstreamId: 1, Term: 1, EventType: EventNodeRejoin}}})
}

// TestNeedsRecloneForwarded: a follower forwards the mark only as the
// primary it is, and the clear only about itself.
func TestNeedsRecloneForwarded(t *testing.T) {
	h := threeNodes(t)
	st := h.m.State()
	for _, tc := range []struct {
		caller string
		cmd    *pb.SetNeedsReclone
		ok     bool
	}{
		{"pg1", &pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 3, NeedsReclone: true}, true},
		{"pg2", &pb.SetNeedsReclone{Term: 1, PrimaryId: 1, NodeId: 3, NeedsReclone: true}, false},
		{"pg3", &pb.SetNeedsReclone{Term: 1, NodeId: 3}, true},
		{"pg2", &pb.SetNeedsReclone{Term: 1, NodeId: 3}, false},
	} {
		err := CheckForwarded(st, tc.caller, reclone(tc.cmd))
		if (err == nil) != tc.ok {
			t.Errorf("%s forwarding %v: %v, want ok=%v", tc.caller, tc.cmd, err, tc.ok)
		}
	}
}

// TestUrgent: what followers act on or show is pushed to them; the lease
// renewals of a cluster at rest are not.
func TestUrgent(t *testing.T) {
	for _, tc := range []struct {
		cmd  *pb.Command
		want bool
	}{
		{&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{}}}, true},
		{&pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{}}}, true},
		{&pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{}}}, true},
		{&pb.Command{Cmd: &pb.Command_EndSwitchover{EndSwitchover: &pb.EndSwitchover{}}}, true},
		{&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{}}}, false},
		{&pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{}}}, true},
		{&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{}}}, true},
		{&pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{}}}, true},
	} {
		if got := Urgent(tc.cmd); got != tc.want {
			t.Errorf("Urgent(%s) = %v, want %v", commandName(tc.cmd), got, tc.want)
		}
	}
}
