package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/node"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newPauseCmd(pause bool) *cobra.Command {
	var t target
	use, short := "unpause", "Resume automatic failover decisions cluster-wide"
	if pause {
		use, short = "pause", "Stop automatic failover decisions cluster-wide (maintenance)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				if _, err := c.cluster.SetPaused(ctx, &pb.SetPausedRequest{Paused: pause}); err != nil {
					return err
				}
				if pause {
					fmt.Println("automatic failover paused: the primary keeps its role; run `hasidecar unpause` to resume")
				} else {
					fmt.Println("automatic failover resumed")
				}
				return nil
			})
		},
	}
	t.flags(cmd, false)
	return cmd
}

func newFailoverCmd() *cobra.Command {
	var t target
	var req pb.FailoverRequest
	cmd := &cobra.Command{
		Use:   "failover --to NAME",
		Short: "Promote NAME now that the primary is really gone (like repmgr standby promote); refused while the primary holds its lease",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.To == "" {
				return fmt.Errorf("say which standby to promote: --to NAME")
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Failover(ctx, &req)
				if err != nil {
					return err
				}
				for _, s := range resp.Checks {
					fmt.Println(s)
				}
				if !req.DryRun {
					fmt.Printf("promotion of %s committed in term %d\n", req.To, resp.Term)
				}
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().StringVar(&req.To, "to", "", "the standby to promote")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "run the checks, change nothing")
	return cmd
}

func newSwitchoverCmd() *cobra.Command {
	var t target
	var req pb.SwitchoverRequest
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "switchover --to NAME",
		Short: "Planned switchover: the primary stops cleanly, NAME promotes, the old primary follows it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.To == "" {
				return fmt.Errorf("say which standby to promote: --to NAME")
			}
			req.TimeoutMs = timeout.Milliseconds()
			t.timeout = timeout + 10*time.Second // the call lasts as long as the switchover
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Switchover(ctx, &req)
				if err != nil {
					return err
				}
				for _, s := range resp.Checks {
					fmt.Println(s)
				}
				if req.DryRun {
					return nil
				}
				if !resp.Ok {
					return fmt.Errorf("switchover to %s failed: %s", req.To, resp.Details)
				}
				fmt.Printf("switchover to %s done: %s (term %d)\n", req.To, resp.Details, resp.Term)
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().StringVar(&req.To, "to", "", "the standby to promote")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "print the plan and every check, change nothing")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "if the target has not promoted within this time, the old primary comes back")
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(*cobra.Command, []string) { fmt.Println("hasidecar", node.Version) },
	}
}
