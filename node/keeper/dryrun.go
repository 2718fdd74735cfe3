package keeper

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// DryRunPlan is `agent --dry-run`'s answer: what plan — the very table
// Reconcile runs — decides for the local data directory as it is now and
// the cluster state st (from the cluster's answer; empty when none
// answered), before the agent started Postgres.
type DryRunPlan struct {
	// Refused: the data directory is not one this node may use (Why says why).
	Refused bool
	// Why is the reconciler's own sentence for the plan.
	Why string
	// Actions are the planned steps, in order.
	Actions []PlannedAction
}

// PlannedAction is one step of a plan, for display.
type PlannedAction struct {
	Kind      string // "clone", "rewind", "start", ... (actionKind.String)
	AsStandby bool
	Upstream  string // the primary it follows or copies, "" for none
}

// DryRun plans without acting: it observes through pg (which must not
// start anything: Postgres is not running yet), reads st, and returns the
// plan. This node is taken as registered (the agent registers before it
// plans): a row of st named cfg.Name, else a new data node. A primary is
// taken as holding a valid lease, which the agent renews before its first
// plan.
func DryRun(ctx context.Context, cfg *config.Config, pg Postgres, st *pb.ClusterState, clk Clock) (DryRunPlan, error) {
	if st == nil {
		st = &pb.ClusterState{}
	}
	if pid := pg.ForeignPostmaster(); pid != 0 {
		// One a previous sidecar left under its guard is adopted (plan).
		if gs, err := pg.GuardStatus(ctx); err != nil || gs.PID != pid {
			return DryRunPlan{}, foreignPostmasterError(cfg.Postgres.DataDir, pid)
		}
	}
	if fsm.NodeByName(st, cfg.Name) == nil {
		st.Nodes = append(st.Nodes, &pb.Node{Name: cfg.Name, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: int32(cfg.Priority), Tags: cfg.Tags})
	}
	k, err := New(Config{Node: cfg, Logger: hclog.NewNullLogger(), Clock: clk, Started: clk.Now()}, staticLog{st}, pg, noPeers{})
	if err != nil {
		return DryRunPlan{}, err
	}
	o := k.observe(ctx)
	d := k.desired(ctx)
	if d.Me != nil && d.Primary != nil && d.Primary.Id == d.Me.Id {
		d.LeaseValid = true
	}
	out := DryRunPlan{Why: refusal(d, o)}
	if out.Why != "" {
		out.Refused = true
		return out, nil
	}
	acts, why := plan(d, o)
	out.Why = why
	for _, a := range acts {
		pa := PlannedAction{Kind: a.Kind.String(), AsStandby: a.AsStandby}
		if a.Upstream != nil {
			pa.Upstream = a.Upstream.Name
		}
		out.Actions = append(out.Actions, pa)
	}
	return out, nil
}

// staticLog is a cluster state that never changes and accepts nothing.
type staticLog struct{ st *pb.ClusterState }

func (l staticLog) State() *pb.ClusterState            { return l.st }
func (l staticLog) Changed() <-chan struct{}           { return nil }
func (l staticLog) WaitCaughtUp(context.Context) error { return nil }
func (l staticLog) Propose(context.Context, *pb.Command, time.Duration) (fsm.Result, error) {
	return fsm.Result{}, errDryRun
}

// noPeers asks nobody.
type noPeers struct{}

func (noPeers) LSNs(_ context.Context, nodes []*pb.Node, _ uint64, _ time.Duration) []*pb.LSNResponse {
	return make([]*pb.LSNResponse, len(nodes))
}
func (noPeers) EnsureSlot(context.Context, *pb.Node, string, uint64, time.Duration) error {
	return errDryRun
}
func (noPeers) PostgresAnswers(*pb.Node, time.Duration) bool { return false }

var errDryRun = &Refused{Msg: "dry run: nothing is changed"}
