package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster-wide views: show, events, matrix, history"}
	cmd.AddCommand(newClusterShowCmd(), newClusterEventsCmd(), newClusterMatrixCmd(false), newClusterMatrixCmd(true),
		newClusterHistoryCmd(), newClusterCleanupCmd())
	return cmd
}

func newClusterShowCmd() *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Every node's role, status, upstream and lag (like repmgr cluster show)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Show(ctx, &pb.ShowRequest{})
				if err != nil {
					return err
				}
				if t.jsonOut {
					return printJSON(toShowJSON(resp))
				}
				renderShow(os.Stdout, resp)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	return cmd
}

func newClusterEventsCmd() *cobra.Command {
	var t target
	var typ, nodeName string
	var node nodeSelector
	var limit int32
	var reverse bool
	cmd := &cobra.Command{
		Use:     "events",
		Aliases: []string{"event"},
		Short:   "The event history, newest first (like repmgr cluster event)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (all) or more, not %d", limit)
			}
			id, name, err := node.parse()
			if err != nil {
				return err
			}
			if nodeName != "" {
				name = nodeName
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Events(ctx, &pb.EventsRequest{EventType: typ, NodeId: id, NodeName: name, Limit: limit})
				if err != nil {
					return err
				}
				evs := resp.Events
				newestFirst(evs, func(e *pb.Event) int64 { return e.TimestampUnixMs }, reverse)
				if t.jsonOut {
					return printJSON(toEventsJSON(evs))
				}
				renderEvents(os.Stdout, evs)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	cmd.Flags().StringVar(&typ, "event", "", "only events of this type (e.g. failover, standby_promote)")
	cmd.Flags().Var(&node, "node", "only events of this node (name or id)")
	cmd.Flags().StringVar(&nodeName, "node-name", "", "only events of this node name (same as --node NAME)")
	_ = cmd.Flags().MarkHidden("node-name")
	cmd.Flags().Int32Var(&limit, "limit", 20, "at most this many events, the newest (0: all)")
	cmd.Flags().BoolVar(&reverse, "reverse", false, "oldest first")
	return cmd
}

func newClusterHistoryCmd() *cobra.Command {
	var t target
	var node nodeSelector
	var since time.Duration
	var limit int32
	var reverse bool
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Monitoring samples from every sidecar's history, newest first (like repmgr's monitoring_history)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, _, err := node.parse(); err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (all) or more, not %d", limit)
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
				if err != nil {
					return err
				}
				id, _, err := node.resolve(view)
				if err != nil {
					return err
				}
				var sinceMs int64
				if since > 0 {
					sinceMs = time.Now().Add(-since).UnixMilli()
				}
				var mu sync.Mutex
				var samples []*pb.NodeReport
				answers := c.forEachMember(ctx, view, id, func(ctx context.Context, _ string, n pb.NodeServiceClient) error {
					resp, err := n.History(ctx, &pb.HistoryRequest{SinceUnixMs: sinceMs, Limit: limit})
					if err != nil {
						return err
					}
					mu.Lock()
					samples = append(samples, resp.Samples...)
					mu.Unlock()
					return nil
				})
				warnMissing(answers, "its samples are missing")
				newestFirst(samples, func(r *pb.NodeReport) int64 { return r.AtUnixMs }, false)
				if limit > 0 && len(samples) > int(limit) {
					samples = samples[:limit]
				}
				if reverse {
					newestFirst(samples, func(r *pb.NodeReport) int64 { return r.AtUnixMs }, true)
				}
				return renderHistory(samples, t.jsonOut)
			})
		},
	}
	t.flags(cmd, true)
	cmd.Flags().Var(&node, "node", "only samples of this node (name or id)")
	cmd.Flags().DurationVar(&since, "since", 0, "only samples of the last D (e.g. 10m)")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many samples, the newest (0: all)")
	cmd.Flags().BoolVar(&reverse, "reverse", false, "oldest first")
	return cmd
}

// warnMissing tells, on stderr, which members did not answer and what that
// leaves out.
func warnMissing(answers []memberAnswer, what string) {
	for _, a := range answers {
		if a.err != nil {
			fmt.Fprintf(os.Stderr, "warning: %s did not answer (%v): %s\n", a.name, a.err, what)
		}
	}
}

func newClusterCleanupCmd() *cobra.Command {
	var t target
	var keep time.Duration
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Trim every sidecar's monitoring history (like repmgr cluster cleanup)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keep < 0 {
				return fmt.Errorf("--keep-history must not be negative, not %s", keep)
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
				if err != nil {
					return err
				}
				var mu sync.Mutex
				removed := map[string]int64{}
				answers := c.forEachMember(ctx, view, 0, func(ctx context.Context, name string, n pb.NodeServiceClient) error {
					resp, err := n.Cleanup(ctx, &pb.CleanupRequest{KeepMs: keep.Milliseconds()})
					if err != nil {
						return err
					}
					mu.Lock()
					removed[name] = resp.Removed
					mu.Unlock()
					return nil
				})
				failed := 0
				for _, a := range answers {
					if a.err != nil {
						failed++
						fmt.Fprintf(os.Stderr, "%s: not trimmed: %v\n", a.name, a.err)
						continue
					}
					fmt.Printf("%s: removed %d monitoring samples older than %s\n", a.name, removed[a.name], keep)
				}
				if failed > 0 {
					return fmt.Errorf("%d of %d sidecars were not trimmed; run cleanup again once they are reachable", failed, len(answers))
				}
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().DurationVar(&keep, "keep-history", 24*time.Hour, "keep the samples of the last D")
	return cmd
}
