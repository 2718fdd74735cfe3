package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "One node: status, check, rejoin, remove, maintenance"}
	cmd.AddCommand(newNodeStatusCmd(), newNodeCheckCmd(), newNodeRejoinCmd(), newNodeRemoveCmd(), newNodeMaintenanceCmd())
	return cmd
}

func newNodeMaintenanceCmd() *cobra.Command {
	var t target
	var req pb.SetMaintenanceRequest
	cmd := &cobra.Command{
		Use:       "maintenance on|off --node NAME",
		Short:     "Leave a standby's Postgres alone (no start, stop, rewind or clone; never a failover candidate), or manage it again",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "on":
				req.On = true
			case "off":
			default:
				return fmt.Errorf("maintenance %q: say on or off", args[0])
			}
			if req.Name == "" {
				return fmt.Errorf("say which node: --node NAME")
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.SetMaintenance(ctx, &req)
				if err != nil {
					return err
				}
				state := "out of maintenance: its keeper manages its Postgres again"
				if req.On {
					state = "in maintenance: its keeper leaves its Postgres alone and it is never a failover candidate"
				}
				if !resp.Changed {
					fmt.Printf("%s was already %s\n", req.Name, state)
					return nil
				}
				fmt.Printf("%s is %s\n", req.Name, state)
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().StringVar(&req.Name, "node", "", "the standby")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why, for cluster events")
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
		Short: "Unregister a standby or witness: a live one stops its Postgres cleanly and exits first; then Raft membership and its slot go (like repmgr standby/witness unregister)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.NodeId == 0 && req.Name == "" {
				return fmt.Errorf("say which node: --id N or --name NAME")
			}
			told := false
			return t.do(cmd, func(ctx context.Context, c *client) error {
				if !told {
					told = true
					if err := tellLeaving(ctx, c, &req); err != nil {
						return err
					}
				}
				// Through the leader (do follows not_leader); while the
				// leaving node hands leadership over, ask again.
				var resp *pb.RemoveNodeResponse
				var err error
				for i := 0; i < 20; i++ {
					if resp, err = c.cluster.RemoveNode(ctx, &req); status.Code(err) != codes.Unavailable {
						break
					}
					select {
					case <-ctx.Done():
						return err
					case <-time.After(500 * time.Millisecond):
					}
				}
				if err != nil {
					return err
				}
				if resp.NodeId == 0 {
					fmt.Printf("%s removed from the Raft configuration (it had no node row)\n", req.Name)
					return nil
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

// tellLeaving asks the node to be removed to stop its Postgres cleanly and
// exit (NodeService.Leave) before it is removed, so that it never carries
// on without a cluster (fencing, rewinding, re-cloning). A node that does
// not answer is removed all the same, with a warning. When the CLI talks
// to that very node, it moves to another member first.
func tellLeaving(ctx context.Context, c *client, req *pb.RemoveNodeRequest) error {
	view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
	if err != nil {
		return err
	}
	var row *pb.NodeView
	var other string
	for _, n := range view.Nodes {
		switch {
		case (req.NodeId != 0 && n.Id == req.NodeId) || (req.Name != "" && n.Name == req.Name):
			row = n
		case n.GrpcAddress != "" && (other == "" || n.Name == view.RaftLeader):
			other = n.GrpcAddress
		}
	}
	if row == nil {
		return nil // the leader says which node is missing
	}
	if row.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return fmt.Errorf("node %q is the primary: switch over to another node before removing it", row.Name)
	}
	answers := c.forEachMember(ctx, view, row.Id, func(ctx context.Context, name string, n pb.NodeServiceClient) error {
		resp, err := n.Leave(ctx, &pb.LeaveRequest{Reason: "hasidecar node remove"})
		if err != nil {
			return err
		}
		where := ""
		if resp.DataDir != "" {
			where = ": Postgres stopped cleanly, data directory " + resp.DataDir + " kept as it was"
		}
		fmt.Printf("%s: told to leave%s; its sidecar exits\n", name, where)
		return nil
	})
	if len(answers) == 1 && answers[0].err != nil {
		fmt.Fprintf(os.Stderr, "warning: %s did not answer (%v): removing it without stopping it; if its sidecar runs, stop it (systemctl stop hasidecar) before it does anything on its own\n", row.Name, answers[0].err)
	}
	if other != "" && c.addr == row.GrpcAddress {
		return c.redial(other)
	}
	return nil
}
