// Command hasidecar is the sidecar (`hasidecar agent`), the operator's CLI
// (cluster, node, switchover, failover, pause) and a local lab. It is thin:
// flags become a config or a gRPC call; the work is in package node.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code (node check's monitoring codes).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "hasidecar: "+ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "hasidecar: "+err.Error())
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hasidecar",
		Short: "Raft-consensus high-availability sidecar for PostgreSQL",
		Long: `hasidecar runs beside every Postgres host (and as a data-less witness) and
keeps exactly one writable primary: every role change is a decision committed
in a Raft log first.

  hasidecar agent -c /etc/hasidecar/hasidecar.yaml   run the sidecar
  hasidecar cluster show                             cluster state, like repmgr cluster show
  hasidecar lab up                                   a local lab on this machine`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newClusterCmd(), newConfigCmd(), newNodeCmd(), newSwitchoverCmd(), newFailoverCmd(), newReinitCmd(), newRestartCmd(), newReloadCmd(),
		newPauseCmd(true), newPauseCmd(false), newLabCmd(), newTLSCmd(), newVersionCmd(), newGuardCmd())
	strictGroups(root)
	return root
}
