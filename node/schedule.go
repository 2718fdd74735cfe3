package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/rolling"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Scheduled operations (DESIGN.md "Scheduled operations"): `switchover
// --scheduled` and `restart --scheduled` are checked by the leader when
// asked, then stored in the replicated state (ClusterState.scheduled). The
// Raft leader, whichever it is when the time comes (its own wall clock
// decides), moves it to running, runs it through the same code as the
// immediate verb and ends it done or failed. An operation that cannot run
// at its time fails and is cleared: never retried.

// scheduleMaxWait caps one sleep of the schedule watcher, so that a clock
// step is noticed within it.
const scheduleMaxWait = time.Second

// Schedule is `switchover --scheduled` / `restart --scheduled`: leader only.
func (s *clusterService) Schedule(ctx context.Context, req *pb.ScheduleRequest) (*pb.ScheduleResponse, error) {
	if err := s.n.requireLeader(ctx); err != nil {
		return nil, err
	}
	return s.n.schedule(ctx, req)
}

// CancelScheduled is `switchover --cancel`: leader only.
func (s *clusterService) CancelScheduled(ctx context.Context, _ *pb.CancelScheduledRequest) (*pb.CancelScheduledResponse, error) {
	n := s.n
	if err := n.requireLeader(ctx); err != nil {
		return nil, err
	}
	st := n.fsm.State()
	op := st.GetScheduled()
	if op == nil {
		if r := st.GetRunning(); r != nil {
			return nil, refuse("the scheduled %s is running already: it cannot be cancelled (a switchover rolls back by itself if it fails)", fsm.DescribeScheduled(r))
		}
		return nil, refuse("nothing is scheduled")
	}
	who := "an operator"
	if id, ok := caller(ctx); ok {
		who = id.String()
	}
	if _, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_EndScheduledOperation{EndScheduledOperation: &pb.EndScheduledOperation{
		Id: op.Id, Outcome: pb.ScheduledOutcome_SCHEDULED_OUTCOME_CANCELLED, Details: "cancelled by " + who}}}); err != nil {
		return nil, fmt.Errorf("cancel the scheduled %s: %w", fsm.DescribeScheduled(op), err)
	}
	n.logger.Info("scheduled operation cancelled", "operation", fsm.DescribeScheduled(op), "by", who)
	return &pb.CancelScheduledResponse{Cancelled: op}, nil
}

func (n *Node) schedule(ctx context.Context, req *pb.ScheduleRequest) (*pb.ScheduleResponse, error) {
	st := n.fsm.State()
	resp := &pb.ScheduleResponse{}
	op := &pb.ScheduledOperation{Kind: req.Kind, Pending: req.Pending, AtUnixMs: req.AtUnixMs, TimeoutMs: req.TimeoutMs}
	if id, ok := caller(ctx); ok {
		op.RequestedBy = id.String()
	}
	if cur := st.GetScheduled(); cur != nil {
		return nil, refuse("a %s is already scheduled: cancel it first (`hasidecar switchover --cancel`)", fsm.DescribeScheduled(cur))
	}
	if at := time.UnixMilli(req.AtUnixMs); !at.After(time.Now()) {
		return nil, invalid("the time %s is in the past: nothing was scheduled", at.UTC().Format(time.RFC3339))
	}
	if req.Target != "" {
		t := fsm.NodeByName(st, req.Target)
		if t == nil {
			return nil, notFound("no node named %q", req.Target)
		}
		op.TargetId = t.Id
	}
	switch req.Kind {
	case pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER:
		if req.Target == "" {
			return nil, invalid("say which standby to promote: --to NAME")
		}
		// The immediate verb's own checks, as a dry run: what would refuse
		// the switchover now refuses the schedule.
		dry, err := n.switchover(ctx, &pb.SwitchoverRequest{To: req.Target, DryRun: true, TimeoutMs: req.TimeoutMs})
		if err != nil {
			return nil, err
		}
		for _, c := range dry.Checks {
			if c != "dry run: nothing was changed" {
				resp.Checks = append(resp.Checks, "now: "+c)
			}
		}
	case pb.ScheduledKind_SCHEDULED_KIND_RESTART:
		view := n.clusterView(n.refreshReports(ctx, true))
		lowered, err := rolling.Lowered(ctx, leaderCluster{n: n}, rolling.PrimaryOf(view))
		if err != nil {
			return nil, refuse("restart of %s: %v", req.Target, err)
		}
		if _, err := rolling.NewPlan(view, op.TargetId, req.Pending, lowered); err != nil {
			return nil, refuse("restart of %s: %v", req.Target, err)
		}
	default:
		return nil, invalid("unknown kind of scheduled operation %v", req.Kind)
	}
	res, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_ScheduleOperation{ScheduleOperation: &pb.ScheduleOperation{Op: op}}})
	if err != nil {
		return nil, fmt.Errorf("store the scheduled %s: %w", fsm.ScheduledKindName(req.Kind), err)
	}
	resp.Operation = n.fsm.State().GetScheduled()
	if resp.Operation.GetId() != res.Index {
		return nil, fmt.Errorf("store the scheduled %s: committed at index %d, but the state holds %v", fsm.ScheduledKindName(req.Kind), res.Index, resp.Operation)
	}
	n.logger.Info("operation scheduled", "operation", fsm.DescribeScheduled(resp.Operation), "by", op.RequestedBy)
	return resp, nil
}

// runSchedules is the Raft leader's watcher: it ends an operation a former
// leader left running (failed: it is not resumed), and runs the scheduled
// one when its time comes. It returns when ctx ends (leadership lost or
// shutdown); an operation it was running then is left running in the
// state, for the next leader to end as interrupted.
func (n *Node) runSchedules(ctx context.Context) {
	for ctx.Err() == nil {
		st := n.fsm.State()
		changed := n.fsm.Changed()
		if r := st.GetRunning(); r != nil {
			n.endScheduled(ctx, r, pb.ScheduledOutcome_SCHEDULED_OUTCOME_FAILED,
				"interrupted: the Raft leader that ran it lost its leadership; it is not resumed (see the events for how far it got)")
		} else if op := fsm.DueOperation(st, time.Now()); op != nil {
			n.runScheduled(ctx, op)
		}
		wait := scheduleMaxWait
		if op := st.GetScheduled(); op != nil {
			wait = min(wait, max(time.Until(time.UnixMilli(op.AtUnixMs)), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(wait):
		}
	}
}

func (n *Node) endScheduled(ctx context.Context, op *pb.ScheduledOperation, outcome pb.ScheduledOutcome, details string) bool {
	_, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_EndScheduledOperation{EndScheduledOperation: &pb.EndScheduledOperation{
		Id: op.Id, Outcome: outcome, Details: details}}})
	if err != nil {
		n.logger.Warn("scheduled operation: could not record its end", "operation", fsm.DescribeScheduled(op), "outcome", outcome.String(), "error", err)
		return false
	}
	return true
}

// runScheduled starts op (scheduled → running), runs it and ends it.
func (n *Node) runScheduled(ctx context.Context, op *pb.ScheduledOperation) {
	what := fsm.DescribeScheduled(op)
	late := time.Since(time.UnixMilli(op.AtUnixMs)).Round(time.Millisecond)
	if !n.endScheduled(ctx, op, pb.ScheduledOutcome_SCHEDULED_OUTCOME_STARTED, fmt.Sprintf("started by %s, %s after its time", n.cfg.Name, late)) {
		return
	}
	n.logger.Info("scheduled operation started", "operation", what, "late", late)
	done, err := n.scheduledWork(ctx, op)
	if ctx.Err() != nil {
		return // no longer leader: the next one ends it as interrupted
	}
	if err != nil {
		n.logger.Warn("scheduled operation failed", "operation", what, "error", err)
		n.endScheduled(ctx, op, pb.ScheduledOutcome_SCHEDULED_OUTCOME_FAILED, userMessage(err))
		return
	}
	n.logger.Info("scheduled operation done", "operation", what, "result", done)
	n.endScheduled(ctx, op, pb.ScheduledOutcome_SCHEDULED_OUTCOME_DONE, done)
}

// scheduledWork runs op through the immediate verb's code: the switchover
// of node/switchover.go, the rolling restart of internal/rolling.
func (n *Node) scheduledWork(ctx context.Context, op *pb.ScheduledOperation) (string, error) {
	st := n.fsm.State()
	if err := fsm.CheckScheduleTarget(st, op); err != nil {
		return "", fmt.Errorf("no longer possible: %w", err)
	}
	target := fsm.NodeByID(st, op.TargetId)
	timeout := time.Duration(op.TimeoutMs) * time.Millisecond
	switch op.Kind {
	case pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER:
		resp, err := n.switchover(ctx, &pb.SwitchoverRequest{To: target.Name, TimeoutMs: op.TimeoutMs})
		if err != nil {
			return "", err
		}
		if !resp.Ok {
			return "", errors.New(resp.Details)
		}
		return fmt.Sprintf("%s (term %d)", resp.Details, resp.Term), nil
	case pb.ScheduledKind_SCHEDULED_KIND_RESTART:
		if timeout <= 0 {
			timeout = 10 * time.Minute
		}
		view := n.clusterView(n.refreshReports(ctx, true))
		c := leaderCluster{n: n, op: op.Id}
		lowered, err := rolling.Lowered(ctx, c, rolling.PrimaryOf(view))
		if err != nil {
			return "", err
		}
		plan, err := rolling.NewPlan(view, op.TargetId, op.Pending, lowered)
		if err != nil {
			return "", err
		}
		for _, s := range plan.Skipped {
			n.logger.Info("scheduled restart: " + s)
		}
		return plan.Run(ctx, c, time.Now().Add(timeout), func(s string) {
			n.logger.Info("scheduled restart: " + s)
		})
	}
	return "", fmt.Errorf("unknown kind %v", op.Kind)
}

func userMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// leaderCluster is the rolling restart's cluster as the Raft leader sees
// it when it runs a scheduled restart: its own view, each node asked over
// PeerService.ScheduledRestart (which checks that the caller leads Raft
// and that this restart is the one running in the state).
type leaderCluster struct {
	n  *Node
	op uint64
}

func (k leaderCluster) Show(ctx context.Context) (*pb.ShowResponse, error) {
	return k.n.clusterView(k.n.refreshReports(ctx, true)), nil
}

func (k leaderCluster) Restart(ctx context.Context, v *pb.NodeView) (*pb.RestartPostgresResponse, error) {
	if v.Name == k.n.cfg.Name {
		return k.n.restartPostgres(ctx)
	}
	conn, err := k.n.peers.get(v.GrpcAddress)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", v.GrpcAddress, err)
	}
	return pb.NewPeerServiceClient(conn).ScheduledRestart(ctx, &pb.ScheduledRestartRequest{OperationId: k.op})
}

// PendingSettings asks n's sidecar with the leader's node certificate
// (NodeService.PendingSettings is a read: any role may).
func (k leaderCluster) PendingSettings(ctx context.Context, v *pb.NodeView) (*pb.PendingSettingsResponse, error) {
	if v.Name == k.n.cfg.Name {
		return k.n.pendingSettings(ctx)
	}
	conn, err := k.n.peers.get(v.GrpcAddress)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", v.GrpcAddress, err)
	}
	return pb.NewNodeServiceClient(conn).PendingSettings(ctx, &pb.PendingSettingsRequest{})
}

func (k leaderCluster) Switchover(ctx context.Context, to string, timeout time.Duration) (*pb.SwitchoverResponse, error) {
	return k.n.switchover(ctx, &pb.SwitchoverRequest{To: to, TimeoutMs: timeout.Milliseconds()})
}

// ScheduledRestart: the Raft leader, running a scheduled restart, asks this
// node to restart its Postgres. Only the Raft leader's own certificate may,
// and only for the restart the state says is running: the operator's
// certificate was checked when it was scheduled.
func (s *peerService) ScheduledRestart(ctx context.Context, req *pb.ScheduledRestartRequest) (*pb.RestartPostgresResponse, error) {
	n := s.n
	_, leaderID := n.raft.LeaderWithID()
	if id, ok := caller(ctx); ok && (leaderID == "" || id.Name != string(leaderID)) {
		return nil, status.Errorf(codes.PermissionDenied, "denied: %s is not the Raft leader (%q): only the leader runs a scheduled restart", id, leaderID)
	}
	// The leader asks right after its STARTED committed: this node may not
	// have applied it yet (followers learn a commit with the next round).
	wait, cancel := context.WithTimeout(ctx, scheduledRestartApplyWait)
	defer cancel()
	for {
		changed := n.fsm.Changed()
		r := n.fsm.State().GetRunning()
		if r != nil && r.Id == req.OperationId && r.Kind == pb.ScheduledKind_SCHEDULED_KIND_RESTART {
			return n.restartPostgres(ctx)
		}
		select {
		case <-wait.Done():
			return nil, refuse("no scheduled restart with id %d is running", req.OperationId)
		case <-changed:
		}
	}
}

// scheduledRestartApplyWait bounds how long ScheduledRestart waits for this
// node to apply the leader's STARTED.
const scheduledRestartApplyWait = 5 * time.Second
