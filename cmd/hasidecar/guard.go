package main

import (
	"errors"
	"flag"
	"os"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/internal/guardcmd"
)

// newGuardCmd is the watchdog process the agent starts beside a Postgres
// that may accept writes (see pgctl/guard.go) when no hasidecar-guard is
// installed beside it; not for operators. Its flags are guardcmd's, the
// same as hasidecar-guard's.
func newGuardCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "pgguard " + guardcmd.Usage,
		Short:              "Internal: kill Postgres when the sidecar stops renewing its write deadline",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := guardcmd.Run(cmd.Context(), "hasidecar pgguard", args, os.Stdin, os.Stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		},
	}
}
