package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "One node: status, check, rejoin, remove"}
	cmd.AddCommand(newNodeStatusCmd(), newNodeCheckCmd(), newNodeRejoinCmd(), newNodeRemoveCmd())
	return cmd
}

func newNodeStatusCmd() *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "status",
		Short: "The answering sidecar's view of itself and its Postgres (like repmgr node status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.node.Status(ctx, &pb.StatusRequest{})
				if err != nil {
					return err
				}
				if t.jsonOut {
					return printJSON(toStatusJSON(resp))
				}
				renderStatus(os.Stdout, resp)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	return cmd
}

func newNodeRejoinCmd() *cobra.Command {
	var t target
	var req pb.RejoinRequest
	cmd := &cobra.Command{
		Use:   "rejoin",
		Short: "Rejoin this stopped former primary or diverged standby to the current primary (pg_rewind, or a clone with --allow-reclone)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.node.Rejoin(ctx, &req)
				if err != nil {
					return err
				}
				for _, s := range resp.Steps {
					fmt.Println(s)
				}
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().Lookup("rpc-timeout").DefValue = "10m"
	_ = cmd.Flags().Set("rpc-timeout", "10m") // a rewind or a clone takes a while
	cmd.Flags().BoolVar(&req.ForceRewind, "force-rewind", false, "run pg_rewind even when the node looks like it could follow as it is")
	cmd.Flags().BoolVar(&req.AllowReclone, "allow-reclone", false, "when pg_rewind cannot work, set the data directory aside and clone afresh")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "print what would be done, change nothing")
	return cmd
}

func newNodeRemoveCmd() *cobra.Command {
	var t target
	var req pb.RemoveNodeRequest
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Unregister a standby or witness: Raft membership and its slot (like repmgr standby/witness unregister)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.NodeId == 0 && req.Name == "" {
				return fmt.Errorf("say which node: --id N or --name NAME")
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.RemoveNode(ctx, &req)
				if err != nil {
					return err
				}
				fmt.Printf("node %d removed from the cluster\n", resp.NodeId)
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().Uint32Var(&req.NodeId, "id", 0, "the node's id")
	cmd.Flags().StringVar(&req.Name, "name", "", "the node's name")
	return cmd
}
