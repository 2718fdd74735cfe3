// Command hasidecar-guard is the watchdog process the hasidecar agent
// starts beside a Postgres that may accept writes (pgctl/guard.go,
// internal/guardcmd). Install it in the same directory as hasidecar; the
// agent falls back to `hasidecar pgguard` when it is missing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hasidecar/hasidecar/internal/guardcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := guardcmd.Run(ctx, guardcmd.Binary, os.Args[1:], os.Stdin, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
