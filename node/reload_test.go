package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
)

// A loopback witness without TLS: New needs no certificate or Postgres.
const reloadWitness = `cluster: main
name: w1
kind: witness
state_dir: STATE
bootstrap: true
tls: {mode: "off"}
raft:
  listen: 127.0.0.1:7000
grpc:
  listen: 127.0.0.1:7001
priority: 100
log_level: info
`

// syncBuf is a log buffer the reload and the test read and write in turn.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReloadConfig: a reload takes the live keys into the snapshot, keeps
// every other key (warning with its name), and a file that does not load,
// or names another node, changes nothing; readers of the snapshot never
// race with it (go test -race).
func TestReloadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w1.yaml")
	base := strings.Replace(reloadWitness, "STATE", filepath.Join(dir, "state"), 1)
	writeCfg := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(base)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	n, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	n.SetConfigFile(path)

	// Readers of the live keys, as the loops are, while reloads run.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := n.conf()
				_ = c.Priority + len(c.Tags) + len(c.LogLevel)
			}
		}()
	}
	defer func() { close(stop); readers.Wait() }()

	ctx := context.Background()
	cases := []struct {
		name                         string
		text                         string
		reloaded, restart, clusterWd []string
		err                          string
		priority                     int
		debug                        bool
	}{
		{name: "unchanged", text: base, reloaded: []string{}, priority: 100},
		{name: "live keys", text: strings.Replace(strings.Replace(base, "priority: 100", "priority: 7\ntags: [nofailover]", 1), "log_level: info", "log_level: debug", 1),
			reloaded: []string{"log_level", "priority", "tags"}, priority: 7, debug: true},
		{name: "a key that needs a restart", text: strings.Replace(base, "priority: 100", "priority: 8\nlocation: elsewhere", 1),
			reloaded: []string{"log_level", "priority", "tags"}, restart: []string{"location"}, priority: 8},
		{name: "a cluster-wide key", text: base + "timing: {lease: 9s}\n",
			reloaded: []string{"priority"}, clusterWd: []string{"timing.lease"}, priority: 100},
		{name: "a file that does not parse", text: base + "priority: banana\n", err: "priority", priority: 100},
		{name: "a file that does not validate", text: strings.Replace(base, "priority: 100", "priority: 5000", 1), err: "out of range", priority: 100},
		{name: "another node's file", text: strings.Replace(base, "name: w1", "name: w2", 1), err: "cannot be renamed", priority: 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.conf()
			writeCfg(tc.text)
			resp := n.reloadConfig(ctx, "test")
			if tc.err != "" {
				if !strings.Contains(resp.Error, tc.err) {
					t.Fatalf("error %q, want one containing %q", resp.Error, tc.err)
				}
				if n.conf() != before {
					t.Fatal("a failed reload replaced the running configuration")
				}
				if !strings.Contains(logs.String(), "nothing was changed") {
					t.Fatalf("no error logged:\n%s", logs.String())
				}
				return
			}
			if resp.Error != "" {
				t.Fatalf("reload: %s", resp.Error)
			}
			if !slices.Equal(nonNilS(resp.Reloaded), tc.reloaded) {
				t.Fatalf("reloaded %q, want %q", resp.Reloaded, tc.reloaded)
			}
			if !slices.Equal(resp.NeedRestart, tc.restart) || !slices.Equal(resp.ClusterWide, tc.clusterWd) {
				t.Fatalf("need restart %q cluster-wide %q, want %q %q", resp.NeedRestart, resp.ClusterWide, tc.restart, tc.clusterWd)
			}
			if got := n.conf().Priority; got != tc.priority {
				t.Fatalf("priority %d, want %d", got, tc.priority)
			}
			if n.cfg.Priority != 100 || n.cfg.Location != cfg.Location {
				t.Fatal("the start-up config was written")
			}
			if n.conf().Location != cfg.Location || n.conf().Timing.Lease != cfg.Timing.Lease {
				t.Fatalf("a key that needs a restart was applied: location %q lease %v", n.conf().Location, n.conf().Timing.Lease)
			}
			if got := logger.IsDebug(); got != tc.debug {
				t.Fatalf("debug logging %v, want %v", got, tc.debug)
			}
			for _, k := range tc.restart {
				if !strings.Contains(logs.String(), k+" changed in the file, but only a restart of the sidecar applies it") {
					t.Fatalf("no warning for %s:\n%s", k, logs.String())
				}
			}
			for _, k := range tc.clusterWd {
				if !strings.Contains(logs.String(), k+" is a cluster-wide key") {
					t.Fatalf("no warning for %s:\n%s", k, logs.String())
				}
			}
		})
	}
}

func nonNilS(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
