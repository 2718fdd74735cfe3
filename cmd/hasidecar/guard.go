package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/pgctl"
)

// newGuardCmd is the watchdog process the agent starts beside a Postgres
// that may accept writes (see pgctl/guard.go); not for operators.
func newGuardCmd() *cobra.Command {
	var (
		pid                   int
		dataDir, socket, user string
		control               string
		port                  int
	)
	cmd := &cobra.Command{
		Use:    "pgguard (--postmaster PID | --data-dir DIR) [--control SOCKET] [--gate-socket DIR --gate-port N --gate-user U]",
		Short:  "Internal: kill Postgres when the sidecar stops renewing its write deadline",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// One P: the gate's answer to each commit is one goroutine
			// waking on one socket, and with a single P the thread that
			// waits in epoll runs it, with no hand-off to another thread.
			runtime.GOMAXPROCS(1)
			gate, err := gateConfig(socket, port, user)
			if err != nil {
				return err
			}
			return pgctl.RunGuardWith(cmd.Context(), pgctl.GuardConfig{
				PID: pid, DataDir: dataDir, In: os.Stdin, Control: control, Gate: gate,
				Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
			})
		},
	}
	cmd.Flags().IntVar(&pid, "postmaster", 0, "the postmaster's pid")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "without --postmaster: guard the postmaster about to start on this data directory")
	cmd.Flags().StringVar(&control, "control", "", "listen on this unix socket for the next sidecar, and outlive this one (Postgres is killed at the last deadline)")
	cmd.Flags().StringVar(&socket, "gate-socket", "", "run the lease gate over the unix socket in this directory")
	cmd.Flags().IntVar(&port, "gate-port", 5432, "the lease gate's Postgres port")
	cmd.Flags().StringVar(&user, "gate-user", "postgres", "the lease gate's Postgres user")
	return cmd
}

func gateConfig(socket string, port int, user string) (*pgconn.Config, error) {
	if socket == "" {
		return nil, nil
	}
	cfg, err := (pgctl.Conninfo{
		"host": socket, "port": strconv.Itoa(port), "user": user, "dbname": "postgres",
		"sslmode": "disable", "connect_timeout": "5",
	}).PgxConfig()
	if err != nil {
		return nil, fmt.Errorf("pgguard: the lease gate's connection: %w", err)
	}
	return &cfg.Config, nil
}
