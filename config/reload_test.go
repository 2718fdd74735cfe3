package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reloadBase is a data node with every live key given, so that a case can
// change one line of it.
const reloadBase = `cluster: main
name: pg-1
state_dir: /var/lib/hasidecar
bootstrap: true
priority: 100
tags: [nosync]
log_level: info
event_command: /bin/true
raft:
  listen: 10.0.0.1:7000
grpc: {listen: 10.0.0.1:7001}
tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}
timing: {lease: 5s}
postgres:
  bin_dir: $BIN
  data_dir: /var/lib/postgresql/15/main
  superuser_password_file: $SUPERPASS
  replication_password_file: $REPLPASS
  parameters: {work_mem: 4MB}
  hba: ["host all all 10.1.0.0/16 scram-sha-256"]
`

func TestPlanReload(t *testing.T) {
	fx := newFixture(t)
	running := mustParse(t, fx.expand(reloadBase))
	before := Flatten(running)
	cases := []struct {
		name          string
		from, to      string // replaced in reloadBase
		live, restart []string
		check         func(t *testing.T, next *Config)
	}{
		{name: "unchanged"},
		{name: "priority", from: "priority: 100", to: "priority: 5", live: []string{"priority"},
			check: func(t *testing.T, c *Config) { want(t, c.Priority, 5) }},
		{name: "tags", from: "tags: [nosync]", to: "tags: [nosync, nofailover]", live: []string{"tags"},
			check: func(t *testing.T, c *Config) { want(t, strings.Join(c.Tags, ","), "nosync,nofailover") }},
		{name: "tags removed", from: "tags: [nosync]\n", to: "", live: []string{"tags"},
			check: func(t *testing.T, c *Config) { want(t, len(c.Tags), 0) }},
		{name: "log level", from: "log_level: info", to: "log_level: debug", live: []string{"log_level"},
			check: func(t *testing.T, c *Config) { want(t, c.LogLevel, "debug") }},
		{name: "event command", from: "event_command: /bin/true", to: "event_command: /bin/echo %e\nevent_command_timeout: 3s",
			live: []string{"event_command", "event_command_timeout"},
			check: func(t *testing.T, c *Config) {
				want(t, c.EventCommand, "/bin/echo %e")
				want(t, c.EventCommandTimeout, sec(3))
			}},
		{name: "a postgres parameter", from: "{work_mem: 4MB}", to: "{work_mem: 8MB, statement_timeout: 5s}",
			live: []string{"postgres.parameters.statement_timeout", "postgres.parameters.work_mem"},
			check: func(t *testing.T, c *Config) {
				want(t, c.Postgres.Parameters["work_mem"], "8MB")
				want(t, c.Postgres.Parameters["statement_timeout"], "5s")
			}},
		{name: "hba", from: "10.1.0.0/16", to: "10.2.0.0/16", live: []string{"postgres.hba"},
			check: func(t *testing.T, c *Config) { want(t, c.Postgres.HBA[0], "host all all 10.2.0.0/16 scram-sha-256") }},
		{name: "the port needs a restart", from: "  bin_dir:", to: "  port: 5433\n  bin_dir:", restart: []string{"postgres.port"},
			check: func(t *testing.T, c *Config) { want(t, c.Postgres.Port, running.Postgres.Port) }},
		{name: "the data dir needs a restart", from: "15/main", to: "15/other", restart: []string{"postgres.data_dir"},
			check: func(t *testing.T, c *Config) { want(t, c.Postgres.DataDir, "/var/lib/postgresql/15/main") }},
		{name: "addresses need a restart", from: "10.0.0.1:7000", to: "10.0.0.1:7100", restart: []string{"raft.advertise", "raft.listen"}},
		{name: "the name needs a restart", from: "name: pg-1", to: "name: pg-9", restart: []string{"name"},
			check: func(t *testing.T, c *Config) { want(t, c.Name, "pg-1") }},
		{name: "a cluster-wide key is not taken", from: "{lease: 5s}", to: "{lease: 8s}", restart: []string{"timing.lease"},
			check: func(t *testing.T, c *Config) { want(t, c.Timing.Lease, sec(5)) }},
		{name: "log_json needs a restart", from: "log_level: info", to: "log_level: info\nlog_json: true", restart: []string{"log_json"}},
		{name: "live and restart keys at once", from: "priority: 100", to: "priority: 7\nlocation: zone-b",
			live: []string{"priority"}, restart: []string{"location"},
			check: func(t *testing.T, c *Config) { want(t, c.Priority, 7); want(t, c.Location, running.Location) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := reloadBase
			if tc.from != "" {
				if !strings.Contains(text, tc.from) {
					t.Fatalf("%q is not in the base file", tc.from)
				}
				text = strings.Replace(text, tc.from, tc.to, 1)
			}
			file := mustParse(t, fx.expand(text))
			p := PlanReload(running, file)
			if !slices.Equal(p.Live, tc.live) || !slices.Equal(p.Restart, tc.restart) {
				t.Fatalf("live %q restart %q, want live %q restart %q", p.Live, p.Restart, tc.live, tc.restart)
			}
			if p.Changed() != (len(tc.live)+len(tc.restart) > 0) {
				t.Fatalf("Changed() = %v", p.Changed())
			}
			if tc.check != nil {
				tc.check(t, p.Next)
			}
			// Next differs from the running config exactly in the live keys.
			next := Flatten(p.Next)
			for _, k := range unionKeys(before, next) {
				if before[k] != next[k] && !slices.Contains(tc.live, k) {
					t.Errorf("next changed %s (%q → %q), which is not a live change", k, before[k], next[k])
				}
			}
			for _, k := range tc.live {
				if next[k] != Flatten(file)[k] {
					t.Errorf("next has %s = %q, the file %q", k, next[k], Flatten(file)[k])
				}
			}
			// The running config is untouched.
			if after := Flatten(running); !reflect.DeepEqual(after, before) {
				t.Fatalf("PlanReload changed the running config")
			}
		})
	}
}

// Every row of the live table names a key the config has, and copying it
// changes that key alone.
func TestLiveKeysExist(t *testing.T) {
	fx := newFixture(t)
	running := mustParse(t, fx.expand(reloadBase))
	keys := Flatten(running)
	for _, k := range LiveKeys() {
		found := false
		for have := range keys {
			if have == k || strings.HasPrefix(have, k+".") {
				found = true
			}
		}
		if !found {
			t.Errorf("live key %s is not a key of the config (the base file gives every live key)", k)
		}
	}
	for _, k := range []string{"name", "postgres.data_dir", "postgres.port", "grpc.listen", "raft.listen", "state_dir", "timing.lease", "tls.cert_file", "postgres.parameters_x"} {
		if IsLiveKey(k) {
			t.Errorf("%s must not be live", k)
		}
	}
}

func want[T comparable](t *testing.T, got, wantV T) {
	t.Helper()
	if got != wantV {
		t.Errorf("got %v, want %v", got, wantV)
	}
}

func TestLowersHotStandby(t *testing.T) {
	cases := []struct {
		name, running, pending string
		want                   bool
	}{
		{"max_connections", "150", "120", true},
		{"max_connections", "120", "150", false},
		{"max_connections", "150", "150", false},
		{"max_connections", "150", "'120'", true},
		{"max_worker_processes", "8", "4", true},
		{"max_wal_senders", "10", "5", true},
		{"max_prepared_transactions", "10", "0", true},
		{"max_locks_per_transaction", "64", "32", true},
		{"shared_buffers", "16384", "1024", false}, // not a hot standby parameter
		{"max_connections", "150", "banana", false},
	}
	for _, c := range cases {
		if got := LowersHotStandby(c.name, c.running, c.pending); got != c.want {
			t.Errorf("LowersHotStandby(%s, %s, %s) = %v, want %v", c.name, c.running, c.pending, got, c.want)
		}
	}
}
