// Package guardcmd is the guard process's command line, the one builder
// behind both ways to run it: the small `hasidecar-guard` binary the agent
// starts when it is installed beside it, and the hidden `hasidecar pgguard`
// it falls back to otherwise. It imports only pgctl and the standard
// library, so that hasidecar-guard carries neither gRPC, Raft nor cobra:
// every guard is a process of its own beside a postmaster, and its resident
// size is a cost on every database host (issue 14: 9 MB against 32 MB).
package guardcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hasidecar/hasidecar/pgctl"
)

// Binary is the guard binary's file name, looked for beside the agent's.
const Binary = "hasidecar-guard"

// Usage is the synopsis of the guard's flags.
const Usage = "(--postmaster PID | --data-dir DIR) [--control SOCKET] [--gate-socket DIR --gate-port N --gate-user U]"

// Run parses args (the flags only) and runs the guard until the postmaster
// is gone or ctx ends; stdin is the sidecar's pipe, stderr the log.
func Run(ctx context.Context, name string, args []string, stdin io.Reader, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s %s\n\nInternal: the watchdog the hasidecar agent starts beside a Postgres that may accept writes;\nit kills Postgres when the sidecar stops renewing its write deadline. Not for operators.\n\n", name, Usage)
		fs.PrintDefaults()
	}
	pid := fs.Int("postmaster", 0, "the postmaster's pid")
	dataDir := fs.String("data-dir", "", "without --postmaster: guard the postmaster about to start on this data directory")
	control := fs.String("control", "", "listen on this unix socket for the next sidecar, and outlive this one (Postgres is killed at the last deadline)")
	socket := fs.String("gate-socket", "", "run the lease gate over the unix socket in this directory")
	port := fs.Int("gate-port", 5432, "the lease gate's Postgres port")
	user := fs.String("gate-user", "postgres", "the lease gate's Postgres user")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q: it takes flags only (%s)", name, fs.Args(), Usage)
	}
	// One P: the gate's answer to each commit is one goroutine waking on
	// one socket, and with a single P the thread that waits in epoll runs
	// it, with no hand-off to another thread.
	runtime.GOMAXPROCS(1)
	gate, err := gateConfig(*socket, *port, *user)
	if err != nil {
		return err
	}
	return pgctl.RunGuardWith(ctx, pgctl.GuardConfig{
		PID: *pid, DataDir: *dataDir, In: stdin, Control: *control, Gate: gate,
		Logf: func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) },
	})
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
