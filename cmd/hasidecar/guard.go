package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/pgctl"
)

// newGuardCmd is the watchdog process the agent starts beside a Postgres
// that may accept writes (see pgctl/guard.go); not for operators.
func newGuardCmd() *cobra.Command {
	var pid int
	cmd := &cobra.Command{
		Use:    "pgguard --postmaster PID",
		Short:  "Internal: kill Postgres when the sidecar stops renewing its write deadline",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pgctl.RunGuard(cmd.Context(), pid, os.Stdin, func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, format+"\n", args...)
			})
		},
	}
	cmd.Flags().IntVar(&pid, "postmaster", 0, "the postmaster's pid")
	return cmd
}
