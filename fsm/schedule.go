package fsm

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Events of a scheduled operation (`switchover --scheduled`, `restart
// --scheduled`): stored, cancelled, started by the Raft leader at its time,
// then done or failed (with the reason; a failed one is never retried).
const (
	EventScheduled          = "operation_scheduled"
	EventScheduledCancelled = "scheduled_cancelled"
	EventScheduledStarted   = "scheduled_started"
	EventScheduledDone      = "scheduled_done"
	EventScheduledFailed    = "scheduled_failed"
)

// ScheduledKindName is the lower-case kind ("switchover", "restart").
func ScheduledKindName(k pb.ScheduledKind) string {
	switch k {
	case pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER:
		return "switchover"
	case pb.ScheduledKind_SCHEDULED_KIND_RESTART:
		return "restart"
	}
	return "unknown"
}

// DescribeScheduled says what op does and when, in the words of the CLI
// ("switchover to pg2 at 2026-12-02T18:30:00Z (id 42)").
func DescribeScheduled(op *pb.ScheduledOperation) string {
	what := ScheduledKindName(op.GetKind())
	switch {
	case op.GetKind() == pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER:
		what += " to " + op.GetTargetName()
	case op.GetTargetId() != 0:
		what += " of " + op.GetTargetName()
	default:
		what = "rolling " + what
	}
	if op.GetPending() {
		what += " (pending only)"
	}
	at := time.UnixMilli(op.GetAtUnixMs()).UTC().Format(time.RFC3339)
	return fmt.Sprintf("%s at %s (id %d)", what, at, op.GetId())
}

// DueOperation is the scheduled operation whose time has come at t, or nil:
// none is scheduled, its time is later, or another one still runs. The
// Raft leader asks this with its own wall clock.
func DueOperation(st *pb.ClusterState, t time.Time) *pb.ScheduledOperation {
	op := st.GetScheduled()
	if op == nil || st.GetRunning() != nil || op.AtUnixMs > t.UnixMilli() {
		return nil
	}
	return op
}

// CheckScheduleTarget is the pure part of the check of a scheduled
// operation's target, the same at schedule time (by the FSM) and when it
// is due: a switchover needs a data standby not in maintenance; a restart
// of one node needs a data node not in maintenance (target 0: the whole
// cluster).
func CheckScheduleTarget(st *pb.ClusterState, op *pb.ScheduledOperation) error {
	switch op.GetKind() {
	case pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER, pb.ScheduledKind_SCHEDULED_KIND_RESTART:
	default:
		return errorf(CodeInvalidCommand, "unknown scheduled operation kind %v", op.GetKind())
	}
	if op.TargetId == 0 {
		if op.Kind == pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER {
			return errorf(CodeInvalidCommand, "a scheduled switchover names the standby to promote")
		}
		return nil
	}
	n := NodeByID(st, op.TargetId)
	switch {
	case n == nil:
		return errorf(CodeUnknownNode, "no node with id %d", op.TargetId)
	case n.Kind != pb.NodeKind_NODE_KIND_DATA:
		return errorf(CodeInvalidTransition, "%q is a witness: it has no Postgres to %s", n.Name, ScheduledKindName(op.Kind))
	case n.Maintenance:
		return errorf(CodeInvalidTransition, "%q is in maintenance: take it out first (`hasidecar node maintenance off --node %s`)", n.Name, n.Name)
	case op.Kind == pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER && n.Role == pb.NodeRole_NODE_ROLE_PRIMARY:
		return errorf(CodeInvalidTransition, "%q is already the primary", n.Name)
	}
	return nil
}

// scheduleOperation stores an operation for later: one at a time (a second
// is refused naming the first, also while one runs), due after the
// command's own time, with a target it can have. The id is the log index.
func (a *applier) scheduleOperation(c *pb.ScheduleOperation) error {
	op := c.GetOp()
	if op == nil {
		return errorf(CodeInvalidCommand, "schedule: no operation")
	}
	if cur := a.st.Scheduled; cur != nil {
		return errorf(CodeConflict, "a %s is already scheduled: cancel it first (`hasidecar switchover --cancel`)", DescribeScheduled(cur))
	}
	if cur := a.st.Running; cur != nil {
		return errorf(CodeConflict, "the scheduled %s is running: wait for it to end", DescribeScheduled(cur))
	}
	if op.AtUnixMs <= a.at {
		return errorf(CodeInvalidCommand, "the time %s is not in the future (now %s)",
			time.UnixMilli(op.AtUnixMs).UTC().Format(time.RFC3339), time.UnixMilli(a.at).UTC().Format(time.RFC3339))
	}
	if op.TimeoutMs < 0 {
		return errorf(CodeInvalidCommand, "schedule: a negative timeout")
	}
	if err := CheckScheduleTarget(a.st, op); err != nil {
		return err
	}
	s := proto.Clone(op).(*pb.ScheduledOperation)
	s.Id, s.RequestedAtUnixMs, s.StartedAtUnixMs = a.index, a.at, 0
	if n := NodeByID(a.st, s.TargetId); n != nil {
		s.TargetName = n.Name
	} else {
		s.TargetName = ""
	}
	a.st.Scheduled = s
	details := DescribeScheduled(s)
	if s.RequestedBy != "" {
		details += ", asked by " + s.RequestedBy
	}
	a.event(s.TargetId, EventScheduled, true, details)
	return nil
}

// endScheduledOperation moves the operation with this id along: cancelled
// or failed while scheduled (cleared), started (scheduled → running), done
// or failed while running (cleared). Any other id or step is refused, so a
// leader that lost the race to a newer one changes nothing.
func (a *applier) endScheduledOperation(c *pb.EndScheduledOperation) error {
	sch, run := a.st.Scheduled, a.st.Running
	isSch := sch != nil && sch.Id == c.Id
	isRun := run != nil && run.Id == c.Id
	if c.Id == 0 || (!isSch && !isRun) {
		return errorf(CodeConflict, "no scheduled operation with id %d", c.Id)
	}
	op := sch
	if isRun {
		op = run
	}
	details := DescribeScheduled(op)
	if c.Details != "" {
		details += ": " + c.Details
	}
	switch {
	case c.Outcome == pb.ScheduledOutcome_SCHEDULED_OUTCOME_CANCELLED && isSch:
		a.st.Scheduled = nil
		a.event(op.TargetId, EventScheduledCancelled, true, details)
	case c.Outcome == pb.ScheduledOutcome_SCHEDULED_OUTCOME_STARTED && isSch:
		if run != nil {
			return errorf(CodeConflict, "the scheduled %s is still running", DescribeScheduled(run))
		}
		r := proto.Clone(sch).(*pb.ScheduledOperation)
		r.StartedAtUnixMs = a.at
		a.st.Scheduled, a.st.Running = nil, r
		a.event(op.TargetId, EventScheduledStarted, true, details)
	case c.Outcome == pb.ScheduledOutcome_SCHEDULED_OUTCOME_DONE && isRun:
		a.st.Running = nil
		a.event(op.TargetId, EventScheduledDone, true, details)
	case c.Outcome == pb.ScheduledOutcome_SCHEDULED_OUTCOME_FAILED:
		if isSch {
			a.st.Scheduled = nil
		} else {
			a.st.Running = nil
		}
		a.event(op.TargetId, EventScheduledFailed, false, details)
	default:
		state := "scheduled"
		if isRun {
			state = "running"
		}
		return errorf(CodeInvalidTransition, "the %s is %s: it cannot be %s", DescribeScheduled(op), state, c.Outcome)
	}
	return nil
}
