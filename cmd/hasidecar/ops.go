package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hasidecar/hasidecar/fsm"
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
	var scheduled string
	var cancel bool
	cmd := &cobra.Command{
		Use:   "switchover --to NAME [--scheduled TIME] | --cancel",
		Short: "Planned switchover: the primary stops cleanly, NAME promotes, the old primary follows it",
		Long: `Planned switchover: the primary stops cleanly, NAME promotes, the old primary follows it.

--scheduled TIME (RFC 3339, 2026-12-02T18:30:00Z, or +10m from now) checks NAME now exactly as
an immediate switchover would, then stores the switchover in the cluster state: the Raft leader,
whichever it is then, runs it at that time. If it cannot run then (NAME unhealthy, the cluster
paused, ...), it fails with a scheduled_failed event and is not retried. One scheduled operation
at a time (a scheduled restart counts); --cancel removes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cancel {
				if req.To != "" || scheduled != "" {
					return fmt.Errorf("--cancel takes no --to or --scheduled: it cancels the one scheduled operation")
				}
				return t.do(cmd, func(ctx context.Context, c *client) error {
					resp, err := c.cluster.CancelScheduled(ctx, &pb.CancelScheduledRequest{})
					if err != nil {
						return err
					}
					fmt.Printf("cancelled: %s\n", fsm.DescribeScheduled(resp.Cancelled))
					return nil
				})
			}
			if req.To == "" {
				return fmt.Errorf("say which standby to promote: --to NAME")
			}
			req.TimeoutMs = timeout.Milliseconds()
			if scheduled != "" {
				if req.DryRun {
					return fmt.Errorf("--dry-run with --scheduled: drop --scheduled to see the checks, or schedule it (it is checked then)")
				}
				at, err := parseScheduleTime(scheduled, time.Now())
				if err != nil {
					return err
				}
				return t.do(cmd, func(ctx context.Context, c *client) error {
					resp, err := c.cluster.Schedule(ctx, &pb.ScheduleRequest{
						Kind: pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER, Target: req.To, AtUnixMs: at.UnixMilli(), TimeoutMs: req.TimeoutMs,
					})
					if err != nil {
						return err
					}
					printScheduled(resp)
					return nil
				})
			}
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
	cmd.Flags().StringVar(&scheduled, "scheduled", "", "run it at this time instead of now: RFC 3339 (2026-12-02T18:30:00Z) or +DURATION (+10m)")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "cancel the scheduled switchover or restart")
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

func newReinitCmd() *cobra.Command {
	var t target
	var req pb.ReinitRequest
	var yes, noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reinit --node NAME",
		Short: "Clone a standby afresh from the primary; its data directory is set aside, not deleted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Name == "" {
				return fmt.Errorf("say which standby to clone afresh: --node NAME")
			}
			if !yes && !req.DryRun {
				if err := confirmName(cmd, req.Name, fmt.Sprintf("reinit stops %s's Postgres now, sets its data directory aside and clones it afresh from the primary", req.Name)); err != nil {
					return err
				}
			}
			t.timeout = timeout + 10*time.Second
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Reinit(ctx, &req)
				if err != nil {
					return err
				}
				for _, s := range resp.Checks {
					fmt.Println(s)
				}
				if req.DryRun || noWait {
					return nil
				}
				return waitRecloned(ctx, c, req.Name, timeout)
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().StringVar(&req.Name, "node", "", "the standby to clone afresh")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "print the checks, change nothing")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the re-clone is asked for, without waiting for it to finish")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait for the node to stream again")
	return cmd
}

// confirmName asks on the terminal for the node's name before a verb that
// destroys a standby's copy; with no terminal it refuses (use --yes).
func confirmName(cmd *cobra.Command, name, what string) error {
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil { // not a terminal (/dev/null, a pipe)
		return fmt.Errorf("%s: confirm with --yes (there is no terminal to ask on); nothing was changed", what)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s.\nType the node's name to go on: ", what)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != name {
		return fmt.Errorf("not confirmed (expected %q): nothing was changed", name)
	}
	return nil
}

// waitRecloned prints the node's progress until its keeper records that it
// cloned afresh and streams again (the recloned event after the latest
// needs_reclone one), or timeout passes.
func waitRecloned(ctx context.Context, c *client, name string, timeout time.Duration) error {
	latest := func(typ string) (uint64, error) {
		r, err := c.cluster.Events(ctx, &pb.EventsRequest{EventType: typ, NodeName: name, Limit: 1})
		if err != nil || len(r.Events) == 0 {
			return 0, err
		}
		return r.Events[0].Index, nil
	}
	marked, err := latest(fsm.EventNeedsReclone)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		if done, err := latest(fsm.EventRecloned); err != nil {
			return err
		} else if done > marked {
			fmt.Printf("%s cloned afresh and streams again\n", name)
			return nil
		}
		if v, err := c.cluster.Show(ctx, &pb.ShowRequest{}); err == nil {
			for _, n := range v.Nodes {
				if n.Name != name {
					continue
				}
				line := fmt.Sprintf("%s: %s", name, n.Status)
				if pg := n.Postgres; pg != nil && pg.Running {
					line += fmt.Sprintf(", postgres running (in recovery %v, wal receiver %q)", pg.InRecovery, pg.WalReceiverStatus)
				} else {
					line += ", postgres not running"
				}
				if line != last {
					fmt.Println(line)
					last = line
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has not finished its re-clone within %s: see `hasidecar cluster show` and its log", name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
