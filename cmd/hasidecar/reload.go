package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newReloadCmd() *cobra.Command {
	var t target
	var only nodeSelector
	cmd := &cobra.Command{
		Use:   "reload [--node NAME]",
		Short: "Reload each sidecar's own config file (as SIGHUP does) and its Postgres configuration (pg_reload_conf)",
		Long: `Ask the node's sidecar (every sidecar without --node) to read its own config file again, as
SIGHUP does: the keys that change live (log_level, priority, tags, event_command,
event_command_timeout, postgres.parameters, postgres.hba, and renewed TLS files) take effect, a
changed key that needs a restart of the sidecar keeps its running value and is named. Then each
data node rewrites its managed Postgres files and reloads Postgres (patronictl reload). A file
that does not load changes nothing on that node. Settings that need a Postgres restart are
listed (see hasidecar restart --pending).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error { return runReload(ctx, c, only, t.jsonOut) })
		},
	}
	t.flags(cmd, true)
	cmd.Flags().Var(&only, "node", "only this node (name or id)")
	return cmd
}

// reloadResult is one node's answer, as `reload --json` prints it.
type reloadResult struct {
	Node             string   `json:"node"`
	Reloaded         []string `json:"reloaded"`
	NeedRestart      []string `json:"need_restart"`
	ClusterWide      []string `json:"cluster_wide"`
	TLSReloaded      bool     `json:"tls_reloaded"`
	PostgresReloaded bool     `json:"postgres_reloaded"`
	PendingRestart   []string `json:"pending_restart"`
	Error            string   `json:"error,omitempty"`
}

func runReload(ctx context.Context, c *client, only nodeSelector, jsonOut bool) error {
	view, err := c.cluster.Show(ctx, &pb.ShowRequest{})
	if err != nil {
		return err
	}
	onlyID, _, err := only.resolve(view)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	results := map[string]*reloadResult{}
	ans := c.forEachMember(ctx, view, onlyID, func(ctx context.Context, name string, node pb.NodeServiceClient) error {
		resp, err := node.ReloadConfig(ctx, &pb.ReloadConfigRequest{Postgres: true})
		if err != nil {
			return err
		}
		r := &reloadResult{Node: name, Reloaded: nonNil(resp.Reloaded), NeedRestart: nonNil(resp.NeedRestart), ClusterWide: nonNil(resp.ClusterWide),
			TLSReloaded: resp.TlsReloaded, PostgresReloaded: resp.PostgresReloaded, PendingRestart: nonNil(resp.PendingRestart), Error: resp.Error}
		mu.Lock() // forEachMember asks the members in parallel
		results[name] = r
		mu.Unlock()
		return nil
	})
	out := make([]*reloadResult, 0, len(ans))
	failed := 0
	for _, a := range ans {
		r := results[a.name]
		if r == nil {
			r = &reloadResult{Node: a.name, Reloaded: []string{}, NeedRestart: []string{}, ClusterWide: []string{}, PendingRestart: []string{}}
		}
		if a.err != nil {
			r.Error = a.err.Error()
		}
		if r.Error != "" {
			failed++
		}
		out = append(out, r)
	}
	if jsonOut {
		if err := printJSON(out); err != nil {
			return err
		}
	} else {
		renderReload(os.Stdout, out)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d nodes did not reload: see above", failed, len(out))
	}
	return nil
}

func renderReload(w io.Writer, rs []*reloadResult) {
	list := func(s []string) string {
		if len(s) == 0 {
			return "none"
		}
		return strings.Join(s, ", ")
	}
	for _, r := range rs {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: not reloaded, nothing changed: %s\n", r.Node, r.Error)
			continue
		}
		fmt.Fprintf(w, "%s: reloaded: %s", r.Node, list(r.Reloaded))
		if r.TLSReloaded {
			fmt.Fprint(w, "; renewed TLS files")
		}
		if r.PostgresReloaded {
			fmt.Fprint(w, "; postgres reloaded")
		}
		fmt.Fprintln(w)
		if len(r.NeedRestart) > 0 {
			fmt.Fprintf(w, "  changed in the file, running value kept until the sidecar restarts: %s\n", list(r.NeedRestart))
		}
		if len(r.ClusterWide) > 0 {
			fmt.Fprintf(w, "  cluster-wide keys, the cluster's values apply (hasidecar config set): %s\n", list(r.ClusterWide))
		}
		if len(r.PendingRestart) > 0 {
			fmt.Fprintf(w, "  postgres settings waiting for a restart (hasidecar restart --pending): %s\n", list(r.PendingRestart))
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
