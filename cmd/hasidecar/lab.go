package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/lab"
)

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A whole cluster on this machine: primary, standbys, witness (what the repmgr lab guide builds by hand)",
	}
	cmd.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabStatusCmd())
	return cmd
}

func newLabUpCmd() *cobra.Command {
	spec := lab.Spec{}
	var timeout time.Duration
	var synchronous bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the lab and wait until it is healthy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if synchronous {
				spec.Tune = func(c *config.Config) { c.Synchronous = true }
			}
			l, err := lab.New(spec)
			if err != nil {
				return err
			}
			fmt.Printf("starting %d data nodes%s in %s ...\n", spec.Standbys+1, map[bool]string{true: " and a witness", false: ""}[spec.Witness], l.Spec.Dir)
			if note := l.ReservePorts(); note != "" {
				fmt.Println(note)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			start := time.Now()
			view, err := l.Up(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("the lab is healthy after %s\n\n", time.Since(start).Round(100*time.Millisecond))
			renderShow(os.Stdout, view)
			primary := l.Nodes[0]
			fmt.Printf(`
Connect (as the postgres OS user, e.g. sudo -u postgres ..., no password on loopback in the lab):
  psql -h 127.0.0.1 -p %[1]d -U postgres -d postgres              # the primary (%[2]s)
  psql "%[3]s"   # whichever node is writable
Ask the cluster:
  %[5]s cluster show -c %[4]s
  %[5]s cluster events -c %[4]s
Stop it:
  %[5]s lab down --dir %[6]s [--purge]
`, primary.PGPort, primary.Name, l.MultiHostDSN(""), primary.ConfigPath, selfPath(), l.Spec.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&spec.Dir, "dir", "lab", "directory for configs, data and logs")
	cmd.Flags().IntVar(&spec.Standbys, "standbys", 3, "number of standbys")
	cmd.Flags().BoolVar(&spec.Witness, "witness", false, "add a witness (a Raft voter without Postgres)")
	cmd.Flags().IntVar(&spec.BasePort, "base-port", lab.DefaultPort, "Postgres port of the primary; standbys use the next ports; sidecars use base+20.. (gRPC), base+40.. (Raft), base+60.. (HTTP)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "give up when the lab is not healthy by then")
	cmd.Flags().BoolVar(&synchronous, "synchronous", false, "synchronous replication (synchronous: true)")
	return cmd
}

func newLabDownCmd() *cobra.Command {
	var dir string
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every process the lab started; --purge also removes its directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(dir)
			if err != nil {
				return err
			}
			running := l.Running()
			if err := l.Down(30 * time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "warning:", err)
			}
			fmt.Printf("stopped %d sidecars in %s\n", len(running), l.Spec.Dir)
			if purge {
				if err := os.RemoveAll(l.Spec.Dir); err != nil {
					return fmt.Errorf("remove %s: %w", l.Spec.Dir, err)
				}
				fmt.Printf("removed %s\n", l.Spec.Dir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "lab", "the lab's directory")
	cmd.Flags().BoolVar(&purge, "purge", false, "remove the lab directory (data, configs, logs) after stopping")
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	var dir string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Which lab processes run, and the cluster as they see it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(dir)
			if err != nil {
				return err
			}
			type procJSON struct {
				Name        string `json:"name"`
				SidecarPID  int    `json:"sidecar_pid"`
				PostgresPID int    `json:"postgres_pid"`
				Config      string `json:"config"`
				Log         string `json:"log"`
			}
			var procs []procJSON
			var rows [][]string
			for _, n := range l.Nodes {
				p := procJSON{Name: n.Name, SidecarPID: n.PID(), PostgresPID: n.PostmasterPID(), Config: n.ConfigPath, Log: n.LogPath}
				procs = append(procs, p)
				rows = append(rows, []string{n.Name, pidText(p.SidecarPID), pidText(p.PostgresPID), n.ConfigPath})
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			view, verr := l.Show(ctx)
			if jsonOut {
				out := map[string]any{"dir": l.Spec.Dir, "processes": procs}
				if verr == nil {
					out["cluster"] = toShowJSON(view)
				}
				return printJSON(out)
			}
			table(os.Stdout, []string{"Node", "Sidecar", "Postgres", "Config"}, rows)
			fmt.Println()
			if verr != nil {
				fmt.Println("cluster: " + strings.TrimSpace(verr.Error()))
				return nil
			}
			renderShow(os.Stdout, view)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "lab", "the lab's directory")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func pidText(pid int) string {
	if pid == 0 {
		return "stopped"
	}
	return fmt.Sprintf("pid %d", pid)
}

// selfPath is how to run this binary again from the current directory: its
// path relative to it when below it (bin/hasidecar), else absolute.
func selfPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "hasidecar"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			if !strings.Contains(rel, "/") {
				rel = "./" + rel
			}
			return rel
		}
	}
	return exe
}
