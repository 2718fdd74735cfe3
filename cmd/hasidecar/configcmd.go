package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/clusterconf"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "The runtime cluster configuration: show, set, history",
	}
	cmd.AddCommand(newConfigShowCmd(), newConfigSetCmd(), newConfigHistoryCmd())
	return cmd
}

func newConfigShowCmd() *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "show",
		Short: "The cluster's configuration with its version, then each node's local overrides and drift",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.config.Show(ctx, &pb.ConfigShowRequest{})
				if err != nil {
					return err
				}
				if t.jsonOut {
					return printJSON(toConfigShowJSON(resp))
				}
				renderConfigShow(os.Stdout, resp)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	return cmd
}

func newConfigSetCmd() *cobra.Command {
	var t target
	var unset []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "set KEY=VALUE … [--unset KEY …]",
		Short: "Change cluster configuration keys (validated, and Postgres settings checked with the primary, before commit)",
		Long: "Change cluster configuration keys. Every change is validated, and Postgres settings are checked\n" +
			"with the primary, before anything is committed: a bad key or value is refused, naming the key,\n" +
			"and nothing changes. `hasidecar config show` lists the keys.",
		RunE: func(cmd *cobra.Command, args []string) error {
			changes, err := parseConfigChanges(args, unset)
			if err != nil {
				return err
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.config.Set(ctx, &pb.ConfigSetRequest{Changes: changes, DryRun: dryRun})
				if err != nil {
					return err
				}
				if t.jsonOut {
					return printJSON(toConfigSetJSON(resp, dryRun))
				}
				renderConfigSet(os.Stdout, resp, dryRun)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	cmd.Flags().StringArrayVar(&unset, "unset", nil, "back to the default (a Postgres parameter: removed); repeatable")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and show the diff, commit nothing")
	return cmd
}

// parseConfigChanges reads KEY=VALUE arguments and --unset keys.
func parseConfigChanges(args, unset []string) ([]*pb.ConfigChange, error) {
	if len(args) == 0 && len(unset) == 0 {
		return nil, fmt.Errorf("no change given; write KEY=VALUE (see `hasidecar config show` for the keys)")
	}
	var out []*pb.ConfigChange
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE; write it like postgresql.parameters.work_mem=8MB (or --unset KEY)", a)
		}
		out = append(out, &pb.ConfigChange{Key: k, Value: v})
	}
	for _, k := range unset {
		out = append(out, &pb.ConfigChange{Key: k, Unset: true})
	}
	return out, nil
}

func newConfigHistoryCmd() *cobra.Command {
	var t target
	var limit int32
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Every configuration change the events table still holds, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit must be 0 (all) or more, not %d", limit)
			}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.config.History(ctx, &pb.ConfigHistoryRequest{Limit: limit})
				if err != nil {
					return err
				}
				h := toConfigHistoryJSON(resp.Events)
				if t.jsonOut {
					return printJSON(h)
				}
				renderConfigHistory(os.Stdout, h)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	cmd.Flags().Int32Var(&limit, "limit", 0, "at most this many changes, the newest (0: all)")
	return cmd
}

type configShowJSON struct {
	Version    uint64              `json:"version"`
	AnsweredBy string              `json:"answered_by"`
	Keys       []clusterconf.Entry `json:"keys"`
	Nodes      []nodeConfigJSON    `json:"nodes"`
}

type nodeConfigJSON struct {
	Name            string            `json:"name"`
	LocalParameters map[string]string `json:"local_parameters"`
	Drift           []driftJSON       `json:"drift"`
	PendingRestart  []string          `json:"pending_restart"`
	Error           string            `json:"error,omitempty"`
}

type driftJSON struct {
	Key     string `json:"key"`
	YAMLKey string `json:"yaml_key"`
	Local   string `json:"local"`
	Cluster string `json:"cluster"`
}

func toConfigShowJSON(r *pb.ConfigShowResponse) configShowJSON {
	out := configShowJSON{Version: r.Settings.GetConfigVersion(), AnsweredBy: r.AnsweredBy, Keys: clusterconf.Entries(r.Settings), Nodes: []nodeConfigJSON{}}
	for _, n := range r.Nodes {
		j := nodeConfigJSON{Name: n.Name, LocalParameters: n.LocalParameters, Drift: []driftJSON{}, PendingRestart: n.PendingRestart, Error: n.Error}
		if j.LocalParameters == nil {
			j.LocalParameters = map[string]string{}
		}
		if j.PendingRestart == nil {
			j.PendingRestart = []string{}
		}
		for _, d := range n.Drift {
			j.Drift = append(j.Drift, driftJSON{Key: d.Key, YAMLKey: d.YamlKey, Local: d.Local, Cluster: d.Cluster})
		}
		out.Nodes = append(out.Nodes, j)
	}
	return out
}

func renderConfigShow(w io.Writer, r *pb.ConfigShowResponse) {
	fmt.Fprintf(w, "Cluster configuration, version %d (answered by %s)\n", r.Settings.GetConfigVersion(), r.AnsweredBy)
	var rows [][]string
	for _, e := range clusterconf.Entries(r.Settings) {
		v := e.Value
		if !e.Set {
			v += " (default)"
		}
		rows = append(rows, []string{e.Key, v, e.Applies})
	}
	table(w, []string{"Key", "Value", "Applies"}, rows)
	if len(r.Nodes) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Nodes (a node's own postgres.parameters win over the cluster's on that node):")
	for _, n := range r.Nodes {
		if n.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", n.Name, n.Error)
			continue
		}
		var parts []string
		if len(n.LocalParameters) > 0 {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(n.LocalParameters)) {
				kv = append(kv, k+"="+n.LocalParameters[k])
			}
			parts = append(parts, "local postgres.parameters "+strings.Join(kv, ", "))
		}
		for _, d := range n.Drift {
			parts = append(parts, fmt.Sprintf("! drift: its file's %s is %s, the cluster's %s is %s (the cluster's applies)", d.YamlKey, d.Local, d.Key, d.Cluster))
		}
		if len(n.PendingRestart) > 0 {
			parts = append(parts, "pending restart: "+strings.Join(n.PendingRestart, ", "))
		}
		if len(parts) == 0 {
			parts = []string{"as the cluster"}
		}
		fmt.Fprintf(w, "  %s: %s\n", n.Name, strings.Join(parts, "; "))
	}
}

type configSetJSON struct {
	Version uint64   `json:"version"`
	DryRun  bool     `json:"dry_run"`
	Diff    []string `json:"diff"`
	Restart []string `json:"restart"`
}

func toConfigSetJSON(r *pb.ConfigSetResponse, dryRun bool) configSetJSON {
	out := configSetJSON{Version: r.Version, DryRun: dryRun, Diff: r.Diff, Restart: r.Restart}
	if out.Diff == nil {
		out.Diff = []string{}
	}
	if out.Restart == nil {
		out.Restart = []string{}
	}
	return out
}

func renderConfigSet(w io.Writer, r *pb.ConfigSetResponse, dryRun bool) {
	switch {
	case len(r.Diff) == 0:
		fmt.Fprintf(w, "nothing changed: every value is already so (version %d)\n", r.Version)
		return
	case dryRun:
		fmt.Fprintf(w, "would change (dry run, version %d):\n", r.Version)
	default:
		fmt.Fprintf(w, "changed, now version %d:\n", r.Version)
	}
	for _, d := range r.Diff {
		fmt.Fprintf(w, "  %s\n", d)
	}
	if len(r.Restart) > 0 {
		fmt.Fprintf(w, "takes effect only after a restart of each data node: %s (`hasidecar cluster show` marks the nodes pending_restart)\n", strings.Join(r.Restart, ", "))
	} else if !dryRun {
		fmt.Fprintln(w, "every data node applies it now (Postgres settings: written and reloaded)")
	}
}

type configChangeJSON struct {
	Time    string             `json:"time"`
	AtMs    int64              `json:"timestamp_unix_ms"`
	Version uint64             `json:"version"`
	Changes []configChangeDiff `json:"changes"`
	Raw     string             `json:"details,omitempty"` // an event text this version cannot read
}

type configChangeDiff struct {
	Key string  `json:"key"`
	Old *string `json:"old"` // null: not set
	New *string `json:"new"`
}

func toConfigHistoryJSON(evs []*pb.Event) []configChangeJSON {
	out := []configChangeJSON{}
	for _, e := range evs {
		j := configChangeJSON{Time: timeText(e.TimestampUnixMs), AtMs: e.TimestampUnixMs, Changes: []configChangeDiff{}}
		v, diffs, err := clusterconf.ParseDetails(e.Details)
		if err != nil {
			j.Raw = e.Details
		}
		j.Version = v
		for _, d := range diffs {
			c := configChangeDiff{Key: d.Key}
			if d.Had {
				c.Old = &d.Old
			}
			if d.Has {
				c.New = &d.New
			}
			j.Changes = append(j.Changes, c)
		}
		out = append(out, j)
	}
	return out
}

func renderConfigHistory(w io.Writer, h []configChangeJSON) {
	if len(h) == 0 {
		fmt.Fprintln(w, "no configuration change in the events table")
		return
	}
	var rows [][]string
	for _, c := range h {
		if c.Raw != "" {
			rows = append(rows, []string{c.Time, "?", c.Raw})
			continue
		}
		for i, d := range c.Changes {
			t, v := c.Time, fmt.Sprint(c.Version)
			if i > 0 {
				t, v = "", ""
			}
			rows = append(rows, []string{t, v, clusterconf.Diff{Key: d.Key, Old: deref(d.Old), New: deref(d.New), Had: d.Old != nil, Has: d.New != nil}.String()})
		}
	}
	table(w, []string{"Time", "Version", "Change"}, rows)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
