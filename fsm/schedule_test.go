package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func scheduleCmd(op *pb.ScheduledOperation) *pb.Command {
	return &pb.Command{Cmd: &pb.Command_ScheduleOperation{ScheduleOperation: &pb.ScheduleOperation{Op: op}}}
}

func endScheduledCmd(id uint64, o pb.ScheduledOutcome, details string) *pb.Command {
	return &pb.Command{Cmd: &pb.Command_EndScheduledOperation{EndScheduledOperation: &pb.EndScheduledOperation{Id: id, Outcome: o, Details: details}}}
}

const (
	kSwitch  = pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER
	kRestart = pb.ScheduledKind_SCHEDULED_KIND_RESTART
)

// TestScheduleRefused: what a schedule may not be — in the past, an
// unknown node, the primary, a witness, a node in maintenance, no target
// for a switchover, an unknown kind — is refused with its code, and
// changes nothing (no schedule, no event).
func TestScheduleRefused(t *testing.T) {
	h := threeNodes(t)
	h.ok(maintenance(&pb.SetMaintenance{Term: 1, NodeId: 3, On: true}))
	future := h.at + 60_000
	for _, tc := range []struct {
		name string
		op   *pb.ScheduledOperation
		code Code
	}{
		{"in the past", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 2, AtUnixMs: h.at - 1}, CodeInvalidCommand},
		{"now", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 2, AtUnixMs: h.at + 1000}, CodeInvalidCommand}, // apply's at is h.at+1000
		{"unknown node", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 9, AtUnixMs: future}, CodeUnknownNode},
		{"the primary", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 1, AtUnixMs: future}, CodeInvalidTransition},
		{"a witness", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 4, AtUnixMs: future}, CodeInvalidTransition},
		{"restart of a witness", &pb.ScheduledOperation{Kind: kRestart, TargetId: 4, AtUnixMs: future}, CodeInvalidTransition},
		{"in maintenance", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 3, AtUnixMs: future}, CodeInvalidTransition},
		{"switchover without a target", &pb.ScheduledOperation{Kind: kSwitch, AtUnixMs: future}, CodeInvalidCommand},
		{"unknown kind", &pb.ScheduledOperation{TargetId: 2, AtUnixMs: future}, CodeInvalidCommand},
		{"negative timeout", &pb.ScheduledOperation{Kind: kSwitch, TargetId: 2, AtUnixMs: future, TimeoutMs: -1}, CodeInvalidCommand},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.m.State()
			if r := h.apply(scheduleCmd(tc.op)); !errors.Is(r.Err, &Error{Code: tc.code}) {
				t.Fatalf("error %v, want %s", r.Err, tc.code)
			}
			after := h.m.State()
			if after.Scheduled != nil || len(after.Events) != len(before.Events) {
				t.Fatalf("a refused schedule changed the state: scheduled %v, %d events (was %d)", after.Scheduled, len(after.Events), len(before.Events))
			}
		})
	}
	if r := h.apply(scheduleCmd(nil)); !errors.Is(r.Err, ErrInvalidCommand) {
		t.Fatalf("an empty schedule: %v", r.Err)
	}
}

// TestScheduleLifecycle: scheduled (id = log index, event), a second one
// refused naming the first, due only at its time, started (→ running; no
// new schedule while it runs), done (cleared); cancel clears; a failure
// before the start clears too; wrong ids and steps are refused.
func TestScheduleLifecycle(t *testing.T) {
	h := threeNodes(t)
	at := h.at + 60_000
	r := h.ok(scheduleCmd(&pb.ScheduledOperation{Kind: kSwitch, TargetId: 2, AtUnixMs: at, RequestedBy: `"operator" (operator)`, TimeoutMs: 30_000}))
	st := h.m.State()
	op := st.Scheduled
	if op == nil || op.Id != r.Index || op.TargetName != "pg2" || op.RequestedAtUnixMs != h.at || op.AtUnixMs != at {
		t.Fatalf("scheduled %v, want id %d, pg2, requested at %d", op, r.Index, h.at)
	}
	if e := st.Events[len(st.Events)-1]; e.Type != EventScheduled || e.NodeId != 2 || !strings.Contains(e.Details, "switchover to pg2") || !strings.Contains(e.Details, "operator") {
		t.Fatalf("event %v", e)
	}
	second := h.apply(scheduleCmd(&pb.ScheduledOperation{Kind: kRestart, AtUnixMs: at + 1000}))
	if !errors.Is(second.Err, ErrConflict) || !strings.Contains(second.Err.Error(), "switchover to pg2") {
		t.Fatalf("second schedule: %v, want a conflict naming the first", second.Err)
	}
	if DueOperation(st, time.UnixMilli(at-1)) != nil || DueOperation(st, time.UnixMilli(at)) == nil {
		t.Fatal("due before its time, or not at it")
	}
	for _, c := range []struct {
		name string
		cmd  *pb.Command
		code Code
	}{
		{"wrong id", endScheduledCmd(op.Id+1, pb.ScheduledOutcome_SCHEDULED_OUTCOME_STARTED, ""), CodeConflict},
		{"id 0", endScheduledCmd(0, pb.ScheduledOutcome_SCHEDULED_OUTCOME_CANCELLED, ""), CodeConflict},
		{"done before started", endScheduledCmd(op.Id, pb.ScheduledOutcome_SCHEDULED_OUTCOME_DONE, ""), CodeInvalidTransition},
		{"no outcome", endScheduledCmd(op.Id, pb.ScheduledOutcome_SCHEDULED_OUTCOME_UNSPECIFIED, ""), CodeInvalidTransition},
	} {
		if r := h.apply(c.cmd); !errors.Is(r.Err, &Error{Code: c.code}) {
			t.Fatalf("%s: %v, want %s", c.name, r.Err, c.code)
		}
	}
	h.ok(endScheduledCmd(op.Id, pb.ScheduledOutcome_SCHEDULED_OUTCOME_STARTED, "started by pg3"))
	st = h.m.State()
	if st.Scheduled != nil || st.Running.GetId() != op.Id || st.Running.StartedAtUnixMs != h.at {
		t.Fatalf("after start: scheduled %v running %v", st.Scheduled, st.Running)
	}
	if DueOperation(st, time.UnixMilli(at+10_000)) != nil {
		t.Fatal("a running operation is due again")
	}
	if r := h.apply(scheduleCmd(&pb.ScheduledOperation{Kind: kRestart, AtUnixMs: at + 1000})); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("schedule while one runs: %v", r.Err)
	}
	if r := h.apply(endScheduledCmd(op.Id, pb.ScheduledOutcome_SCHEDULED_OUTCOME_CANCELLED, "")); !errors.Is(r.Err, ErrInvalidTransition) {
		t.Fatalf("cancel of a running one: %v", r.Err)
	}
	h.ok(endScheduledCmd(op.Id, pb.ScheduledOutcome_SCHEDULED_OUTCOME_DONE, "pg2 is the primary"))
	st = h.m.State()
	if st.Running != nil || st.Scheduled != nil {
		t.Fatalf("after done: %v %v", st.Scheduled, st.Running)
	}
	types := func() []string {
		var out []string
		for _, e := range h.m.State().Events {
			if strings.HasPrefix(e.Type, "scheduled_") || e.Type == EventScheduled {
				out = append(out, e.Type)
			}
		}
		return out
	}
	if got := strings.Join(types(), ","); got != "operation_scheduled,scheduled_started,scheduled_done" {
		t.Fatalf("events %s", got)
	}

	// Cancel clears; a failure before the start clears (never retried).
	r = h.ok(scheduleCmd(&pb.ScheduledOperation{Kind: kRestart, AtUnixMs: h.at + 60_000, Pending: true}))
	h.ok(endScheduledCmd(r.Index, pb.ScheduledOutcome_SCHEDULED_OUTCOME_CANCELLED, "cancelled by x"))
	if st := h.m.State(); st.Scheduled != nil {
		t.Fatalf("after cancel: %v", st.Scheduled)
	}
	r = h.ok(scheduleCmd(&pb.ScheduledOperation{Kind: kRestart, TargetId: 3, AtUnixMs: h.at + 60_000}))
	h.ok(endScheduledCmd(r.Index, pb.ScheduledOutcome_SCHEDULED_OUTCOME_FAILED, "the cluster is paused"))
	st = h.m.State()
	if st.Scheduled != nil {
		t.Fatalf("after failure: %v", st.Scheduled)
	}
	last := st.Events[len(st.Events)-1]
	if last.Type != EventScheduledFailed || last.Ok || !strings.Contains(last.Details, "the cluster is paused") || !strings.Contains(last.Details, "restart of pg3") {
		t.Fatalf("failure event %v", last)
	}
	if got := strings.Join(types()[3:], ","); got != "operation_scheduled,scheduled_cancelled,operation_scheduled,scheduled_failed" {
		t.Fatalf("events %s", got)
	}
	if err := CheckForwarded(st, "pg2", scheduleCmd(&pb.ScheduledOperation{Kind: kSwitch, TargetId: 2, AtUnixMs: h.at + 60_000})); err == nil {
		t.Fatal("a follower may forward a schedule: only an operator on the leader may")
	}
}

// TestPropertySchedule: any sequence of schedule commands, their ends and
// unrelated commands: two machines agree (apply is deterministic), there is
// at most one scheduled and one running operation and never both with the
// same id, a scheduled one is always due after the time it was asked, and
// a cancel that is accepted leaves nothing scheduled.
func TestPropertySchedule(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := New(), New()
		at := int64(1_700_000_000_000)
		a.Apply(1, initCmd(at))
		b.Apply(1, initCmd(at))
		for i, name := range []string{"pg1", "pg2", "pg3", "w1"} {
			kind := pb.NodeKind_NODE_KIND_DATA
			if name[0] == 'w' {
				kind = pb.NodeKind_NODE_KIND_WITNESS
			}
			cmd := &pb.Command{AtUnixMs: at, Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: name, Kind: kind, Priority: 100, RaftAddress: name + ":1", GrpcAddress: name + ":2"}}}
			a.Apply(uint64(2+i), cmd)
			b.Apply(uint64(2+i), cmd)
		}
		index := uint64(10)
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for range steps {
			index++
			at += int64(rapid.IntRange(0, 5000).Draw(t, "dt"))
			st := a.State()
			var cmd *pb.Command
			switch rapid.IntRange(0, 3).Draw(t, "what") {
			case 0, 1:
				cmd = scheduleCmd(&pb.ScheduledOperation{
					Kind:     pb.ScheduledKind(rapid.IntRange(0, 2).Draw(t, "kind")),
					TargetId: rapid.Uint32Range(0, 5).Draw(t, "target"),
					AtUnixMs: at + int64(rapid.IntRange(-2000, 10_000).Draw(t, "ahead")),
				})
			case 2:
				id := rapid.Uint64Range(0, index).Draw(t, "id")
				if op := st.Scheduled; op != nil && rapid.Bool().Draw(t, "thatOne") {
					id = op.Id
				} else if op := st.Running; op != nil && rapid.Bool().Draw(t, "runningOne") {
					id = op.Id
				}
				cmd = endScheduledCmd(id, pb.ScheduledOutcome(rapid.IntRange(0, 4).Draw(t, "outcome")), "")
			case 3:
				cmd = genCommand(t, st, at)
			}
			cmd.AtUnixMs = at
			ra, rb := a.Apply(index, cmd), b.Apply(index, cmd)
			if (ra.Err == nil) != (rb.Err == nil) {
				t.Fatalf("results differ: %v / %v", ra.Err, rb.Err)
			}
			sa, sb := a.State(), b.State()
			snapA, _ := a.Snapshot()
			snapB, _ := b.Snapshot()
			if string(snapA) != string(snapB) {
				t.Fatalf("states differ after %v", cmd)
			}
			if ra.Err != nil {
				if !protoEqualSched(st, sa) {
					t.Fatalf("a refused command changed the schedule: %v → %v / %v → %v", st.Scheduled, sa.Scheduled, st.Running, sa.Running)
				}
				continue
			}
			if sa.Scheduled != nil && sa.Running != nil && sa.Scheduled.Id == sa.Running.Id {
				t.Fatalf("the same operation scheduled and running: %v", sa.Scheduled)
			}
			if op := sa.Scheduled; op != nil && op.AtUnixMs <= op.RequestedAtUnixMs {
				t.Fatalf("scheduled at %d, not after it was asked (%d)", op.AtUnixMs, op.RequestedAtUnixMs)
			}
			if e, ok := cmd.Cmd.(*pb.Command_EndScheduledOperation); ok && e.EndScheduledOperation.Outcome == pb.ScheduledOutcome_SCHEDULED_OUTCOME_CANCELLED && sa.Scheduled != nil {
				t.Fatalf("accepted cancel left %v scheduled", sa.Scheduled)
			}
			if s, ok := cmd.Cmd.(*pb.Command_ScheduleOperation); ok {
				if st.Scheduled != nil || st.Running != nil {
					t.Fatalf("a second schedule accepted: %v while %v / %v", s.ScheduleOperation.Op, st.Scheduled, st.Running)
				}
				if sa.Scheduled.GetId() != index {
					t.Fatalf("schedule id %d, want the log index %d", sa.Scheduled.GetId(), index)
				}
			}
			checkInvariants(t, st, sa)
			_ = sb
		}
	})
}

func protoEqualSched(x, y *pb.ClusterState) bool {
	return x.Scheduled.GetId() == y.Scheduled.GetId() && x.Running.GetId() == y.Running.GetId() &&
		x.Running.GetStartedAtUnixMs() == y.Running.GetStartedAtUnixMs()
}
