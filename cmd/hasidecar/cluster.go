package main

import (
	"context"
	"fmt"
	"os"
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
	var nodeID uint32
	var limit int32
	cmd := &cobra.Command{
		Use:     "events",
		Aliases: []string{"event"},
		Short:   "The event history, newest first (like repmgr cluster event)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (all) or more, not %d", limit)
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Events(ctx, &pb.EventsRequest{EventType: typ, NodeId: nodeID, NodeName: nodeName, Limit: limit})
				if err != nil {
					return err
				}
				if t.jsonOut {
					return printJSON(toEventsJSON(resp.Events))
				}
				renderEvents(os.Stdout, resp.Events)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	cmd.Flags().StringVar(&typ, "event", "", "only events of this type (e.g. failover, standby_promote)")
	cmd.Flags().Uint32Var(&nodeID, "node", 0, "only events of this node id")
	cmd.Flags().StringVar(&nodeName, "node-name", "", "only events of this node name")
	cmd.Flags().Int32Var(&limit, "limit", 20, "at most this many events (0: all)")
	return cmd
}

func newClusterHistoryCmd() *cobra.Command {
	var t target
	var nodeID uint32
	var since time.Duration
	var limit int32
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Monitoring samples kept by the leader (like repmgr's monitoring_history)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				var sinceMs int64
				if since > 0 {
					sinceMs = time.Now().Add(-since).UnixMilli()
				}
				resp, err := c.cluster.History(ctx, &pb.HistoryRequest{NodeId: nodeID, SinceUnixMs: sinceMs, Limit: limit})
				if err != nil {
					return err
				}
				return renderHistory(resp.Samples, t.jsonOut)
			})
		},
	}
	t.flags(cmd, true)
	cmd.Flags().Uint32Var(&nodeID, "node", 0, "only samples of this node id")
	cmd.Flags().DurationVar(&since, "since", 0, "only samples of the last D (e.g. 10m)")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many samples, newest kept (0: all)")
	return cmd
}

func newClusterCleanupCmd() *cobra.Command {
	var t target
	var keep time.Duration
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Trim the monitoring history (like repmgr cluster cleanup)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Cleanup(ctx, &pb.CleanupRequest{KeepMs: keep.Milliseconds()})
				if err != nil {
					return err
				}
				fmt.Printf("removed %d monitoring samples older than %s\n", resp.Removed, keep)
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().DurationVar(&keep, "keep-history", 24*time.Hour, "keep the samples of the last D")
	return cmd
}
