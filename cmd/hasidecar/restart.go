package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// restartOpts are the flags of `hasidecar restart`.
type restartOpts struct {
	node    nodeSelector
	pending bool
	yes     bool
	timeout time.Duration
}

func newRestartCmd() *cobra.Command {
	var t target
	var o restartOpts
	cmd := &cobra.Command{
		Use:   "restart [--node NAME] [--pending]",
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
standbys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t.timeout = o.timeout + 30*time.Second
			return t.do(cmd, func(ctx context.Context, c *client) error { return runRestart(ctx, cmd, c, o) })
		},
	}
	t.flags(cmd, false)
	cmd.Flags().Var(&o.node, "node", "only this node (name or id); a primary restarts in place")
	cmd.Flags().BoolVar(&o.pending, "pending", false, "only the nodes whose Postgres has settings waiting for a restart")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up when the restarts have not finished in this time")
	return cmd
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
	var primary *pb.NodeView
	var targets []*pb.NodeView
	for _, n := range view.Nodes {
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || (onlyID != 0 && n.Id != onlyID) {
			continue
		}
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			primary = n
		}
		if o.pending && len(n.GetPostgres().GetPendingRestart()) == 0 {
			continue
		}
		if n.Maintenance {
			fmt.Printf("skipping %s: in maintenance\n", n.Name)
			continue
		}
		targets = append(targets, n)
	}
	if onlyID != 0 && len(targets) == 0 && !o.pending {
		return fmt.Errorf("--node %s: a witness or a node in maintenance has no Postgres its keeper restarts", o.node)
	}
	if len(targets) == 0 {
		fmt.Println("nothing to restart: no node has settings waiting for a restart")
		return nil
	}
	var standbys []string
	withPrimary := false
	for _, n := range targets {
		if primary != nil && n.Id == primary.Id {
			withPrimary = true
		} else {
			standbys = append(standbys, n.Name)
		}
	}
	var lowered []string
	if primary != nil {
		if lowered, err = loweredOn(ctx, c, view, primary); err != nil {
			return err
		}
	}
	primaryName := ""
	if primary != nil {
		primaryName = primary.Name
	}
	steps, err := orderRestart(primaryName, standbys, withPrimary, onlyID == 0, lowered)
	if err != nil {
		return err
	}
	var plan []string
	for _, st := range steps {
		plan = append(plan, st.String())
	}
	word := view.Cluster
	if onlyID != 0 {
		word = targets[0].Name
	}
	if !o.yes {
		if err := confirmName(cmd, word, "restart will: "+strings.Join(plan, "; then ")); err != nil {
			return err
		}
	}
	if len(lowered) > 0 && withPrimary {
		fmt.Printf("lowering %s: the primary first (a standby may not run them lower than its primary)\n", strings.Join(lowered, ", "))
	}
	deadline := time.Now().Add(o.timeout)
	byName := map[string]*pb.NodeView{}
	for _, n := range targets {
		byName[n.Name] = n
	}
	for i, st := range steps {
		switch st.kind {
		case stepRestart:
			fmt.Printf("[%d/%d] restarting %s\n", i+1, len(steps), st.node)
		case stepPrimaryInPlace:
			fmt.Printf("[%d/%d] restarting the primary %s in place\n", i+1, len(steps), st.node)
		case stepSwitchover:
			if err := switchoverRestart(ctx, c, st.node, deadline, i+1, len(steps)); err != nil {
				return err
			}
			continue
		}
		if err := restartNode(ctx, c, view, byName[st.node], deadline); err != nil {
			if st.kind == stepPrimaryInPlace && len(lowered) > 0 {
				return fmt.Errorf("lowering %s needs the primary restarted first, and it was not (nothing else was restarted): %w", strings.Join(lowered, ", "), err)
			}
			return err
		}
	}
	fmt.Println("done")
	return nil
}

// switchoverRestart is a rolling restart's last step: a switchover from
// primary to the best standby, which restarts the former primary as a
// standby.
func switchoverRestart(ctx context.Context, c *client, primary string, deadline time.Time, step, steps int) error {
	view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
	if err != nil {
		return err
	}
	to := bestSwitchoverTarget(view, primary)
	if to == "" {
		return fmt.Errorf("no standby streams that could take over from %s: the standbys are restarted; restart %s in place with `hasidecar restart --node %s`", primary, primary, primary)
	}
	fmt.Printf("[%d/%d] switching over from %s to %s\n", step, steps, primary, to)
	before := postmasterStart(view, primary)
	resp, err := c.cluster.Switchover(ctx, &pb.SwitchoverRequest{To: to, TimeoutMs: (60 * time.Second).Milliseconds()})
	if err != nil {
		return err
	}
	if !resp.Ok {
		return fmt.Errorf("switchover to %s failed: %s", to, resp.Details)
	}
	fmt.Printf("switchover done (term %d): %s\n", resp.Term, resp.Details)
	if err := waitRestarted(ctx, c, primary, before, true, deadline); err != nil {
		return err
	}
	fmt.Printf("%s is the primary\n", to)
	return nil
}

// loweredOn asks the primary's sidecar which of its settings waiting for a
// restart lower one of config.HotStandbyParameters ("name running →
// pending" each).
func loweredOn(ctx context.Context, c *client, view *pb.ShowResponse, primary *pb.NodeView) ([]string, error) {
	if len(primary.GetPostgres().GetPendingRestart()) == 0 {
		return nil, nil
	}
	var out []string
	ans := c.forEachMember(ctx, view, primary.Id, func(ctx context.Context, _ string, node pb.NodeServiceClient) error {
		resp, err := node.PendingSettings(ctx, &pb.PendingSettingsRequest{})
		if err != nil {
			return err
		}
		for _, p := range resp.Settings {
			if p.LowersHotStandby {
				out = append(out, fmt.Sprintf("%s %s → %s", p.Name, p.Running, p.Pending))
			}
		}
		return nil
	})
	if len(ans) != 1 || ans[0].err != nil {
		err := fmt.Errorf("not in the cluster view")
		if len(ans) == 1 {
			err = ans[0].err
		}
		return nil, fmt.Errorf("ask the primary %s which settings wait for a restart (nothing was restarted): %w", primary.Name, err)
	}
	return out, nil
}

// stepKind is one step of a restart.
type stepKind int

const (
	stepRestart        stepKind = iota + 1 // a standby
	stepPrimaryInPlace                     // the primary, under its lease
	stepSwitchover                         // to the best standby, which restarts the primary as a standby
)

type restartStep struct {
	kind stepKind
	node string
}

func (s restartStep) String() string {
	switch s.kind {
	case stepPrimaryInPlace:
		return fmt.Sprintf("restart the primary %s in place (writes pause while it restarts; no failover)", s.node)
	case stepSwitchover:
		return fmt.Sprintf("switch over from %s to the best standby, which restarts %s as a standby", s.node, s.node)
	}
	return "restart " + s.node
}

// orderRestart orders a restart of standbys (and of the primary when
// withPrimary; rolling: the whole cluster, not --node). Raising a setting
// of config.HotStandbyParameters works standbys first, then a switchover
// (or the primary in place with --node): a standby may run it higher than
// its primary. Lowering one (lowered: what the primary's pending settings
// lower) needs the primary first, in place, then the standbys: Postgres
// refuses a hot standby that runs one lower than its primary, so neither a
// standby restarted first nor the former primary after a switchover (its
// new primary still runs the higher value) could start.
func orderRestart(primary string, standbys []string, withPrimary, rolling bool, lowered []string) ([]restartStep, error) {
	var steps []restartStep
	if len(lowered) > 0 {
		if !withPrimary {
			return nil, fmt.Errorf("the primary %s lowers %s at its restart, and a standby may not run them lower than its primary: restart the primary first (`hasidecar restart --node %s`, or the whole cluster with --pending), then the standbys; nothing was restarted",
				primary, strings.Join(lowered, ", "), primary)
		}
		steps = append(steps, restartStep{stepPrimaryInPlace, primary})
		for _, s := range standbys {
			steps = append(steps, restartStep{stepRestart, s})
		}
		return steps, nil
	}
	for _, s := range standbys {
		steps = append(steps, restartStep{stepRestart, s})
	}
	switch {
	case withPrimary && rolling:
		steps = append(steps, restartStep{stepSwitchover, primary})
	case withPrimary:
		steps = append(steps, restartStep{stepPrimaryInPlace, primary})
	}
	return steps, nil
}

// restartNode asks n's own sidecar to restart its Postgres and waits until
// it is back in its role.
func restartNode(ctx context.Context, c *client, view *pb.ShowResponse, n *pb.NodeView, deadline time.Time) error {
	var before int64
	var standby bool
	ans := c.forEachMember(ctx, view, n.Id, func(ctx context.Context, _ string, node pb.NodeServiceClient) error {
		resp, err := node.RestartPostgres(ctx, &pb.RestartPostgresRequest{})
		if err == nil {
			before, standby = resp.PostmasterStartUnixMs, resp.Role != pb.NodeRole_NODE_ROLE_PRIMARY
		}
		return err
	})
	if len(ans) != 1 {
		return fmt.Errorf("%s: not in the cluster view", n.Name)
	}
	if ans[0].err != nil {
		return fmt.Errorf("%s: %w", n.Name, ans[0].err)
	}
	return waitRestarted(ctx, c, n.Name, before, standby, deadline)
}

// waitRestarted waits until name runs a postmaster other than the one that
// started at before (unix ms), in recovery and streaming when standby,
// else writable, with no setting waiting for a restart; it prints what it
// sees while it waits.
func waitRestarted(ctx context.Context, c *client, name string, before int64, standby bool, deadline time.Time) error {
	last := ""
	for {
		view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
		if err == nil {
			for _, n := range view.Nodes {
				if n.Name != name {
					continue
				}
				pg := n.GetPostgres()
				restarted := pg.GetRunning() && pg.GetPostmasterStartUnixMs() != before
				back := restarted && (standby == pg.GetInRecovery()) && (!standby || pg.GetWalReceiverStatus() == "streaming")
				if back && len(pg.GetPendingRestart()) == 0 {
					fmt.Printf("  %s is back: %s\n", name, n.Status)
					return nil
				}
				line := "  " + name + ": " + n.Status
				if back {
					line += ", still pending: " + strings.Join(pg.GetPendingRestart(), ", ")
				}
				if line != last {
					fmt.Println(line)
					last = line
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not back after its restart: see `hasidecar cluster show` and its log", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bestSwitchoverTarget is the streaming standby with the least lag (then
// the highest priority) that could be promoted, or "".
func bestSwitchoverTarget(view *pb.ShowResponse, primary string) string {
	var cands []*pb.NodeView
	for _, n := range view.Nodes {
		pg := n.GetPostgres()
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Name == primary || n.Role != pb.NodeRole_NODE_ROLE_STANDBY ||
			n.Maintenance || n.Priority <= 0 || slices.Contains(n.Tags, "nofailover") ||
			!pg.GetRunning() || pg.GetWalReceiverStatus() != "streaming" || n.LagBytes < 0 {
			continue
		}
		cands = append(cands, n)
	}
	if len(cands) == 0 {
		return ""
	}
	slices.SortStableFunc(cands, func(a, b *pb.NodeView) int {
		if c := cmp.Compare(a.LagBytes, b.LagBytes); c != 0 {
			return c
		}
		return cmp.Compare(b.Priority, a.Priority)
	})
	return cands[0].Name
}

func postmasterStart(view *pb.ShowResponse, name string) int64 {
	for _, n := range view.Nodes {
		if n.Name == name {
			return n.GetPostgres().GetPostmasterStartUnixMs()
		}
	}
	return 0
}
