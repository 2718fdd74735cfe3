package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// configDoc is the part of `config show --json` this test reads.
type configDoc struct {
	Version uint64 `json:"version"`
	Keys    []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"keys"`
	Nodes []struct {
		Name           string   `json:"name"`
		PendingRestart []string `json:"pending_restart"`
		Error          string   `json:"error"`
	} `json:"nodes"`
}

func (d *configDoc) value(key string) (string, bool) {
	for _, k := range d.Keys {
		if k.Key == key {
			return k.Value, true
		}
	}
	return "", false
}

// TestClusterConfig: the runtime cluster configuration on a primary and two
// standbys. A GUC set once for the cluster reaches every node's Postgres
// (reloaded, no restart) within seconds; one that needs a restart marks
// every node pending_restart; bad input — an unknown key, a wrong type, a
// managed GUC, a value or a name Postgres refuses (checked with the primary
// before commit) — is refused with its message and changes nothing.
func TestClusterConfig(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 2})
	c.start()
	v := c.waitHealthy(90 * time.Second)
	primary := primaryName(v)
	// Ask a standby's sidecar: the CLI follows not_leader to the leader.
	addr := c.node(otherThan(primary, "pg1", "pg2", "pg3")).GRPCAddr()

	show := func() *configDoc {
		t.Helper()
		out, errOut, code := c.cli("config", "show", "--json", "--addr", addr)
		if code != 0 {
			t.Fatalf("config show exited %d: %s", code, errOut)
		}
		var d configDoc
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("config show --json: %v: %s", err, out)
		}
		return &d
	}
	set := func(args ...string) string {
		t.Helper()
		out, errOut, code := c.cli(append([]string{"config", "set", "--addr", addr}, args...)...)
		if code != 0 {
			t.Fatalf("config set %s exited %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	showSetting := func(node, name string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, err := c.connect(ctx, node)
		if err != nil {
			return "connect: " + err.Error()
		}
		defer conn.Close(ctx)
		var s string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&s); err != nil {
			return "SHOW: " + err.Error()
		}
		return s
	}
	data := []string{"pg1", "pg2", "pg3"}

	before := show()
	if _, ok := before.value("postgresql.parameters.work_mem"); ok {
		t.Fatalf("a new cluster already sets work_mem: %+v", before.Keys)
	}

	// 1. work_mem: every node's Postgres within seconds, by a reload.
	from := time.Now()
	out := set("postgresql.parameters.work_mem=8MB")
	if !strings.Contains(out, `postgresql.parameters.work_mem unset → "8MB"`) || strings.Contains(out, "restart") {
		t.Fatalf("config set work_mem printed:\n%s", out)
	}
	reached := map[string]time.Duration{}
	eventually(t, 15*time.Second, "work_mem=8MB on every node", func() string {
		var missing []string
		for _, n := range data {
			if _, ok := reached[n]; ok {
				continue
			}
			if got := showSetting(n, "work_mem"); got == "8MB" {
				reached[n] = time.Since(from)
			} else {
				missing = append(missing, n+": "+got)
			}
		}
		return strings.Join(missing, "; ")
	})
	t.Logf("work_mem=8MB reached SHOW work_mem: %v (from the start of `config set`)", reached)

	// 2. max_connections needs a restart: accepted, reported, and every
	// node marked pending_restart in cluster show --json.
	out = set("postgresql.parameters.max_connections=150")
	if !strings.Contains(out, "takes effect only after a restart of each data node: max_connections") {
		t.Fatalf("config set max_connections printed:\n%s", out)
	}
	from = time.Now()
	eventually(t, 20*time.Second, "every node pending_restart max_connections in cluster show --json", func() string {
		v, err := c.showJSON(primary)
		if err != nil {
			return err.Error()
		}
		var missing []string
		for _, n := range v.Nodes {
			if !slices.Contains(n.PendingRestart, "max_connections") {
				missing = append(missing, fmt.Sprintf("%s: %v", n.Name, n.PendingRestart))
			}
		}
		if len(v.Nodes) != len(data) {
			missing = append(missing, fmt.Sprintf("%d nodes", len(v.Nodes)))
		}
		return strings.Join(missing, "; ")
	})
	t.Logf("every node pending_restart max_connections %s after the commit", time.Since(from).Round(10*time.Millisecond))
	if got := showSetting(primary, "max_connections"); got != "100" {
		t.Errorf("max_connections %q before a restart, want the old 100", got)
	}

	// 3. config show --json lists both, with the version moved by two.
	after := show()
	for key, want := range map[string]string{"postgresql.parameters.work_mem": "8MB", "postgresql.parameters.max_connections": "150"} {
		if got, ok := after.value(key); !ok || got != want {
			t.Errorf("config show: %s = %q (listed %t), want %q", key, got, ok, want)
		}
	}
	if after.Version != before.Version+2 {
		t.Errorf("version %d after two changes from %d", after.Version, before.Version)
	}
	for _, n := range after.Nodes {
		if n.Error != "" || !slices.Contains(n.PendingRestart, "max_connections") {
			t.Errorf("config show, node %s: error %q, pending_restart %v", n.Name, n.Error, n.PendingRestart)
		}
	}

	// 4. Bad input: refused, named, nothing changed.
	for _, tc := range []struct {
		name, arg, want string
	}{
		{"unknown key", "bogus=1", "bogus: not a cluster configuration key"},
		{"wrong type", "timing.lease=fast", `timing.lease: "fast" is not a duration`},
		{"out of range", "timing.lease=10m", "timing.lease: 10m is out of range; use 1s to 2m"},
		{"managed GUC", "postgresql.parameters.primary_conninfo=host=evil", "postgresql.parameters.primary_conninfo: managed by hasidecar; remove it"},
		{"invalid GUC value", "postgresql.parameters.work_mem=banana", `postgresql.parameters.work_mem: invalid value for parameter "work_mem": "banana"`},
		{"GUC out of Postgres's range", "postgresql.parameters.max_connections=0", `postgresql.parameters.max_connections: 0 is outside the valid range for parameter "max_connections" (1 .. 262143)`},
		{"unknown GUC", "postgresql.parameters.no_such_setting=1", `postgresql.parameters.no_such_setting: unrecognized configuration parameter "no_such_setting"`},
		{"synchronous_count above the standbys", "synchronous_count=3", "synchronous_count: 3 is more than the 2 standbys that could be in the synchronous set (3 data nodes minus the primary)"},
		{"synchronous mode misspelt", "synchronous=strcit", `synchronous: "strcit" is not a synchronous mode; use off, on or strict`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A good change beside the bad one: refused with it.
			_, errOut, code := c.cli("config", "set", "--addr", addr, "postgresql.parameters.maintenance_work_mem=128MB", tc.arg)
			if code == 0 {
				t.Fatalf("config set %s was accepted", tc.arg)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("config set %s: %q, want it to say %q", tc.arg, strings.TrimSpace(errOut), tc.want)
			}
			now := show()
			if now.Version != after.Version || !slices.Equal(keysText(now), keysText(after)) {
				t.Errorf("the configuration changed:\nbefore %d %v\nafter  %d %v", after.Version, keysText(after), now.Version, keysText(now))
			}
		})
	}
	if got := showSetting(primary, "work_mem"); got != "8MB" {
		t.Errorf("work_mem %q after the refusals, want 8MB", got)
	}

	// 5. config edit: the same file through $EDITOR, applied at the version
	// it was read at.
	script := filepath.Join(t.TempDir(), "ed.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsed -i 's/\"8MB\"/\"16MB\"/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := c.runCLIEnv([]string{"EDITOR=" + script, "VISUAL="}, "config", "edit", "--yes", "--addr", addr)
	if code != 0 || !strings.Contains(out, `postgresql.parameters.work_mem "8MB" → "16MB"`) {
		t.Fatalf("config edit exited %d:\n%s%s", code, out, errOut)
	}
	eventually(t, 15*time.Second, "work_mem=16MB on every node after config edit", func() string {
		var missing []string
		for _, n := range data {
			if got := showSetting(n, "work_mem"); got != "16MB" {
				missing = append(missing, n+": "+got)
			}
		}
		return strings.Join(missing, "; ")
	})

	// 6. Removing max_connections again also needs a restart: said so.
	out = set("--unset", "postgresql.parameters.max_connections")
	if !strings.Contains(out, `postgresql.parameters.max_connections "150" → unset`) || !strings.Contains(out, "takes effect only after a restart of each data node: max_connections") {
		t.Fatalf("config set --unset max_connections printed:\n%s", out)
	}
	after = show()
	if _, ok := after.value("postgresql.parameters.max_connections"); ok {
		t.Errorf("max_connections still listed after --unset")
	}

	// 7. config history: the four changes, newest first.
	out, errOut, code = c.cli("config", "history", "--json", "--addr", addr)
	if code != 0 {
		t.Fatalf("config history: %s", errOut)
	}
	var hist []struct {
		Version uint64 `json:"version"`
		Changes []struct {
			Key string `json:"key"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(out), &hist); err != nil {
		t.Fatalf("config history --json: %v: %s", err, out)
	}
	var keys []string
	for _, h := range hist {
		keys = append(keys, h.Changes[0].Key)
	}
	if want := []string{"postgresql.parameters.max_connections", "postgresql.parameters.work_mem", "postgresql.parameters.max_connections", "postgresql.parameters.work_mem"}; !slices.Equal(keys, want) || hist[0].Version != after.Version {
		t.Errorf("config history: %s", out)
	}
}

func keysText(d *configDoc) []string {
	var out []string
	for _, k := range d.Keys {
		out = append(out, k.Key+"="+k.Value)
	}
	return out
}
