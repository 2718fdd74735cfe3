package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/node"
)

func newAgentCmd() *cobra.Command {
	var path string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "agent -c FILE",
		Short: "Run the sidecar (SIGTERM leaves cleanly)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				path = defaultConfigPath
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if dryRun {
				steps, err := node.DryRun(cmd.Context(), cfg)
				for _, s := range steps {
					fmt.Println(s)
				}
				return err
			}
			logger := hclog.New(&hclog.LoggerOptions{
				Name:       "hasidecar",
				Level:      hclog.LevelFromString(cfg.LogLevel),
				JSONFormat: cfg.LogJSON,
				Output:     os.Stderr,
				TimeFormat: "2006-01-02T15:04:05.000Z0700",
			}).With("node", cfg.Name)
			if err := startPprof(logger); err != nil {
				return err
			}
			n, err := node.New(cfg, logger)
			if err != nil {
				return err
			}
			if data, err := os.ReadFile(path); err == nil {
				n.SetFileKeys(config.GivenKeys(data))
			}
			n.SetConfigFile(path)
			// SIGHUP: read the config file again (the keys that change
			// live) and the certificate files (a renewed certificate).
			// The forwarder is joined before the command returns.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			ctx, cancel := context.WithCancel(cmd.Context())
			forwarded := make(chan struct{})
			go func() {
				defer close(forwarded)
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						n.Reload()
					}
				}
			}()
			defer func() { cancel(); <-forwarded }()
			return n.Run(ctx)
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default "+defaultConfigPath+")")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what the sidecar would do on start (initdb, clone, follow, adopt) and exit without changing anything")
	return cmd
}
