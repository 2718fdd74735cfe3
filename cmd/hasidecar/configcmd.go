package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/hasidecar/hasidecar/clusterconf"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "The runtime cluster configuration: show, set, edit, history",
	}
	cmd.AddCommand(newConfigShowCmd(), newConfigSetCmd(), newConfigEditCmd(), newConfigHistoryCmd())
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
				return usageError("%v", err)
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

func newConfigEditCmd() *cobra.Command {
	var t target
	var yes bool
	cmd := &cobra.Command{
		Use:   "edit [--yes]",
		Short: "Edit the cluster configuration as YAML in $EDITOR: validated, the diff shown, applied once confirmed",
		Long: "Opens the cluster configuration in $VISUAL or $EDITOR (default vi). On save it is validated\n" +
			"(and Postgres settings checked with the primary), the diff is shown and, once confirmed, applied\n" +
			"at the version it was read at: a change made meanwhile by someone else is refused, not overwritten.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cur *pb.Settings
			if err := t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.config.Show(ctx, &pb.ConfigShowRequest{})
				cur = resp.GetSettings()
				return err
			}); err != nil {
				return err
			}
			edited, err := editText(renderEditable(cur))
			if err != nil {
				return err
			}
			vals, err := parseEditable(edited)
			if err != nil {
				return fmt.Errorf("%v; nothing changed", err)
			}
			changes := clusterconf.Changes(cur, vals)
			out := cmd.OutOrStdout()
			if len(changes) == 0 {
				fmt.Fprintf(out, "nothing changed (version %d)\n", cur.GetConfigVersion())
				return nil
			}
			req := &pb.ConfigSetRequest{Version: cur.GetConfigVersion(), Changes: changes, DryRun: true}
			return t.do(cmd, func(ctx context.Context, c *client) error {
				dry, err := c.config.Set(ctx, req)
				if err != nil {
					return err
				}
				renderConfigSet(out, dry, true)
				if len(dry.Diff) == 0 {
					return nil
				}
				if !yes && !confirm(cmd.InOrStdin(), out, "apply? [y/N] ") {
					fmt.Fprintln(out, "nothing changed")
					return nil
				}
				req.DryRun = false
				res, err := c.config.Set(ctx, req)
				if err != nil {
					return err
				}
				renderConfigSet(out, res, false)
				return nil
			})
		},
	}
	t.flags(cmd, false)
	cmd.Flags().BoolVar(&yes, "yes", false, "apply without asking")
	return cmd
}

// renderEditable is the configuration as `config edit` shows it: one
// "key: value" line per key in table order, every value double-quoted.
func renderEditable(s *pb.Settings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# hasidecar cluster configuration, version %d (hasidecar config show lists the keys).\n", s.GetConfigVersion())
	b.WriteString("# Edit values and save; add a postgresql.parameters.NAME line to set a Postgres setting,\n")
	b.WriteString("# remove one to unset it. An empty file changes nothing.\n")
	for _, e := range clusterconf.Entries(s) {
		fmt.Fprintf(&b, "%s: %s\n", e.Key, strconv.Quote(e.Value))
	}
	return b.String()
}

// parseEditable reads the edited file: a mapping of key to scalar value.
// An empty file is refused (it would unset every parameter).
func parseEditable(text string) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, fmt.Errorf("the edited configuration is not YAML: %v", err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("the edited configuration is empty")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the edited configuration must be KEY: VALUE lines", root.Line)
	}
	out := map[string]string{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: %s: give the value on one line, quoted", v.Line, k.Value)
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("line %d: %s given twice; keep one", k.Line, k.Value)
		}
		out[k.Value] = v.Value
	}
	return out, nil
}

// editText opens text in $VISUAL or $EDITOR (default vi) and returns what
// was saved.
func editText(text string) (string, error) {
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	dir, err := os.MkdirTemp("", "hasidecar-config-")
	if err != nil {
		return "", fmt.Errorf("a file to edit: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("a file to edit: %w", err)
	}
	cmd := exec.Command("sh", "-c", editor+` "$1"`, "sh", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("the editor %q: %v; nothing changed", editor, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the edited file: %w", err)
	}
	return string(b), nil
}

// confirm asks on out and reads one answer from in: true for y or yes.
func confirm(in io.Reader, out io.Writer, prompt string) bool {
	fmt.Fprint(out, prompt)
	line, _ := bufio.NewReader(in).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}
