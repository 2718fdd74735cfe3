package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/internal/rolling"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// restartOpts are the flags of `hasidecar restart`.
type restartOpts struct {
	node      nodeSelector
	pending   bool
	yes       bool
	timeout   time.Duration
	scheduled string
}

func newRestartCmd() *cobra.Command {
	var t target
	var o restartOpts
	cmd := &cobra.Command{
		Use:   "restart [--node NAME] [--pending] [--scheduled TIME]",
		Short: "Restart Postgres: one node, or the whole cluster rolling (standbys one at a time, a switchover to the best standby, then the former primary)",
		Long: `Restart Postgres so that settings waiting for a restart (pending_restart) take effect.

Without --node: a rolling restart — each standby in turn (the next only once the last streams
again), then a switchover to the best standby, which restarts the former primary as a standby.
At most one promotion; writes pause only for the switchover. With --node: that node only; a
primary restarts in place (writes pause while it restarts, no failover). --pending restarts only
the nodes whose Postgres reports pending_restart.

Raising a setting that a standby must have at least as high as its primary (max_connections,
max_worker_processes, max_wal_senders, max_prepared_transactions, max_locks_per_transaction)
works in this order. Lowering one (the primary's pending value below its running one) restarts
the primary first, in place (it must be allowed to: postgres.restart_timeout above 0), then the
standbys.

--scheduled TIME (RFC 3339, 2026-12-02T18:30:00Z, or +10m from now) stores the restart in the
cluster state instead; the Raft leader, whichever it is then, plans and runs it at that time
(the plan is made then, from the cluster as it is then). Cancel it with
` + "`hasidecar switchover --cancel`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.scheduled != "" {
				at, err := parseScheduleTime(o.scheduled, time.Now())
				if err != nil {
					return err
				}
				return t.do(cmd, func(ctx context.Context, c *client) error { return scheduleRestart(ctx, cmd, c, o, at) })
			}
			t.timeout = o.timeout + 30*time.Second
			return t.do(cmd, func(ctx context.Context, c *client) error { return runRestart(ctx, cmd, c, o) })
		},
	}
	t.flags(cmd, false)
	cmd.Flags().Var(&o.node, "node", "only this node (name or id); a primary restarts in place")
	cmd.Flags().BoolVar(&o.pending, "pending", false, "only the nodes whose Postgres has settings waiting for a restart")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up when the restarts have not finished in this time")
	cmd.Flags().StringVar(&o.scheduled, "scheduled", "", "run it at this time instead of now: RFC 3339 (2026-12-02T18:30:00Z) or +DURATION (+10m)")
	return cmd
}

func scheduleRestart(ctx context.Context, cmd *cobra.Command, c *client, o restartOpts, at time.Time) error {
	view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
	if err != nil {
		return err
	}
	_, name, err := o.node.resolve(view)
	if err != nil {
		return err
	}
	word := view.Cluster
	if name != "" {
		word = name
	}
	what := fmt.Sprintf("restart will be scheduled for %s", at.UTC().Format(time.RFC3339))
	if !o.yes {
		if err := confirmName(cmd, word, what); err != nil {
			return err
		}
	}
	resp, err := c.cluster.Schedule(ctx, &pb.ScheduleRequest{
		Kind: pb.ScheduledKind_SCHEDULED_KIND_RESTART, Target: name, Pending: o.pending,
		AtUnixMs: at.UnixMilli(), TimeoutMs: o.timeout.Milliseconds(),
	})
	if err != nil {
		return err
	}
	printScheduled(resp)
	return nil
}

// cliCluster is the rolling restart's cluster as the CLI sees it: every
// call with the operator's own certificate, each node's restart asked of
// that node's sidecar.
type cliCluster struct{ c *client }

func (k cliCluster) Show(ctx context.Context) (*pb.ShowResponse, error) {
	return k.c.cluster.Show(ctx, &pb.ShowRequest{})
}

func (k cliCluster) Restart(ctx context.Context, n *pb.NodeView) (*pb.RestartPostgresResponse, error) {
	var resp *pb.RestartPostgresResponse
	view := &pb.ShowResponse{Nodes: []*pb.NodeView{n}}
	ans := k.c.forEachMember(ctx, view, n.Id, func(ctx context.Context, _ string, node pb.NodeServiceClient) error {
		r, err := node.RestartPostgres(ctx, &pb.RestartPostgresRequest{})
		resp = r
		return err
	})
	if len(ans) != 1 {
		return nil, fmt.Errorf("not in the cluster view")
	}
	if ans[0].err != nil {
		return nil, ans[0].err
	}
	return resp, nil
}

func (k cliCluster) PendingSettings(ctx context.Context, n *pb.NodeView) (*pb.PendingSettingsResponse, error) {
	var resp *pb.PendingSettingsResponse
	view := &pb.ShowResponse{Nodes: []*pb.NodeView{n}}
	ans := k.c.forEachMember(ctx, view, n.Id, func(ctx context.Context, _ string, node pb.NodeServiceClient) error {
		r, err := node.PendingSettings(ctx, &pb.PendingSettingsRequest{})
		resp = r
		return err
	})
	if len(ans) != 1 {
		return nil, fmt.Errorf("not in the cluster view")
	}
	if ans[0].err != nil {
		return nil, ans[0].err
	}
	return resp, nil
}

// Switchover asks the Raft leader, which may have changed since the
// restart began (a primary's sidecar hands Raft leadership away).
func (k cliCluster) Switchover(ctx context.Context, to string, timeout time.Duration) (*pb.SwitchoverResponse, error) {
	var resp *pb.SwitchoverResponse
	err := k.c.leaderCall(ctx, os.Stderr, func(ctx context.Context, c *client) error {
		var err error
		resp, err = c.cluster.Switchover(ctx, &pb.SwitchoverRequest{To: to, TimeoutMs: timeout.Milliseconds()})
		return err
	})
	return resp, err
}

func runRestart(ctx context.Context, cmd *cobra.Command, c *client, o restartOpts) error {
	// The switchover is a leader-only verb: talk to the leader from the
	// start (a follower answers not_leader here, before anything changed,
	// and the caller redials).
	if _, err := c.config.Show(ctx, &pb.ConfigShowRequest{}); err != nil {
		return err
	}
	view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
	if err != nil {
		return err
	}
	onlyID, _, err := o.node.resolve(view)
	if err != nil {
		return err
	}
	lowered, err := rolling.Lowered(ctx, cliCluster{c}, rolling.PrimaryOf(view))
	if err != nil {
		return err
	}
	plan, err := rolling.NewPlan(view, onlyID, o.pending, lowered)
	if errors.Is(err, rolling.ErrNoTarget) {
		return fmt.Errorf("--node %s: %w", o.node, err)
	}
	if err != nil {
		return err
	}
	for _, s := range plan.Skipped {
		fmt.Println(s)
	}
	if len(plan.Steps) == 0 {
		fmt.Println("nothing to restart: no node has settings waiting for a restart")
		return nil
	}
	word := view.Cluster
	switch {
	case onlyID != 0 && plan.WithPrimary:
		word = plan.Primary.Name
	case onlyID != 0:
		word = plan.Standbys[0].Name
	}
	if !o.yes {
		if err := confirmName(cmd, word, "restart will: "+plan.Describe()); err != nil {
			return err
		}
	}
	done, err := plan.Run(ctx, cliCluster{c}, time.Now().Add(o.timeout), func(s string) { fmt.Println(s) })
	if err != nil {
		return err
	}
	fmt.Println("done: " + done)
	return nil
}
