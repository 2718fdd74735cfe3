package config

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func mustParse(t *testing.T, data string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(data), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v\ninput:\n%s", err, data)
	}
	return cfg
}

func sec(n int) Duration { return Duration(time.Duration(n) * time.Second) }

// expectedMinimalData is what dataYAML parses to: every default filled.
func expectedMinimalData(fx *fixture) *Config {
	return &Config{
		Cluster:   "main",
		Name:      "pg-1",
		Kind:      KindData,
		StateDir:  "/var/lib/hasidecar",
		Location:  "default",
		Priority:  100,
		Bootstrap: true,
		Raft: RaftConfig{
			Listen:            "10.0.0.1:7000",
			Advertise:         "10.0.0.1:7000",
			HeartbeatTimeout:  Duration(500 * time.Millisecond),
			ElectionTimeout:   Duration(500 * time.Millisecond),
			SnapshotThreshold: 1024,
			SnapshotInterval:  sec(30),
			MaxVoters:         5,
			VoterReplaceAfter: sec(30),
		},
		GRPC: ListenConfig{Listen: "10.0.0.1:7001", Advertise: "10.0.0.1:7001"},
		TLS:  expectedTLS(fx),
		Postgres: &PostgresConfig{
			BinDir:                  fx.bin,
			DataDir:                 "/var/lib/postgresql/15/main",
			Host:                    "127.0.0.1",
			ListenAddresses:         "127.0.0.1",
			Port:                    5432,
			SocketDir:               "/var/lib/hasidecar/run",
			OSUser:                  "postgres",
			Superuser:               "postgres",
			ReplicationUser:         "replicator",
			SuperuserPasswordFile:   fx.expand("$SUPERPASS"),
			ReplicationPasswordFile: fx.expand("$REPLPASS"),
			AuthMethod:              "scram-sha-256",
			AllowedNetworks:         []string{"127.0.0.1/32"},
			LogFile:                 "/var/lib/hasidecar/postgres.log",
			StartTimeout:            sec(60),
			StopTimeout:             sec(30),
			RestartTimeout:          sec(10),
			WALKeepSize:             1 << 30,
			DiskFullThreshold:       64 << 20,
			MaxSlotWALKeepSize:      16 << 30,
		},
		Timing:               TimingConfig{MonitorInterval: sec(1), Lease: sec(4), DriftMarginPercent: 10},
		Events:               EventsConfig{MaxCount: 1000, MaxAge: Duration(720 * time.Hour)},
		Monitoring:           MonitoringConfig{HistoryRetention: DefaultHistoryRetention, HistoryInterval: DefaultHistoryInterval},
		Failover:             FailoverAutomatic,
		MaximumLagOnFailover: 16 << 20,
		SlotRetention:        Duration(30 * time.Minute),
		EventCommandTimeout:  sec(10),
		LogLevel:             "info",
	}
}

// expectedTLS is what tlsFiles parses to.
func expectedTLS(fx *fixture) TLSConfig {
	return TLSConfig{Mode: TLSModeOn, CAFile: fx.expand("$CA"), CertFile: fx.expand("$CERT"), KeyFile: fx.expand("$KEY")}
}

// expectedMinimalWitness is what minimalWitnessYAML parses to.
func expectedMinimalWitness(fx *fixture) *Config {
	return &Config{
		Cluster:  "main",
		Name:     "w1",
		Kind:     KindWitness,
		StateDir: "/var/lib/hasidecar",
		Location: "default",
		Priority: 100,
		Join:     []string{"10.0.0.1:7001"},
		Raft: RaftConfig{
			Listen:            "10.0.0.9:7000",
			Advertise:         "10.0.0.9:7000",
			HeartbeatTimeout:  Duration(500 * time.Millisecond),
			ElectionTimeout:   Duration(500 * time.Millisecond),
			SnapshotThreshold: 1024,
			SnapshotInterval:  sec(30),
			MaxVoters:         5,
			VoterReplaceAfter: sec(30),
		},
		GRPC:                 ListenConfig{Listen: "10.0.0.9:7001", Advertise: "10.0.0.9:7001"},
		TLS:                  expectedTLS(fx),
		Timing:               TimingConfig{MonitorInterval: sec(1), Lease: sec(4), DriftMarginPercent: 10},
		Events:               EventsConfig{MaxCount: 1000, MaxAge: Duration(720 * time.Hour)},
		Monitoring:           MonitoringConfig{HistoryRetention: DefaultHistoryRetention, HistoryInterval: DefaultHistoryInterval},
		Failover:             FailoverAutomatic,
		MaximumLagOnFailover: 16 << 20,
		SlotRetention:        Duration(30 * time.Minute),
		EventCommandTimeout:  sec(10),
		LogLevel:             "info",
	}
}

const minimalWitnessYAML = `cluster: main
name: w1
kind: witness
state_dir: /var/lib/hasidecar
join: [10.0.0.1:7001]
raft:
  listen: 10.0.0.9:7000
grpc: {listen: 10.0.0.9:7001}
tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}
`

// labYAML is a witness on host, a loopback address, with TLS off in the
// flow form, and what it parses to.
func labYAML(host string) string {
	return "cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: " +
		strconv.Quote(net.JoinHostPort(host, "7000")) + "\ngrpc:\n  listen: " + strconv.Quote(net.JoinHostPort(host, "7001")) + "\ntls: {mode: off}\n"
}

func expectedLab(fx *fixture, host string) *Config {
	c := expectedMinimalWitness(fx)
	c.Bootstrap, c.Join = true, nil
	raft, grpc := net.JoinHostPort(host, "7000"), net.JoinHostPort(host, "7001")
	c.Raft.Listen, c.Raft.Advertise = raft, raft
	c.GRPC = ListenConfig{Listen: grpc, Advertise: grpc}
	c.TLS = TLSConfig{Mode: TLSModeOff}
	return c
}

func TestParseValid(t *testing.T) {
	fx := newFixture(t)
	full := &Config{
		Cluster:   "main",
		Name:      "pg-1",
		Kind:      KindData,
		StateDir:  "/var/lib/hasidecar",
		Location:  "zone-a",
		Priority:  100,
		Tags:      []string{"noloadbalance"},
		Bootstrap: true,
		Join:      []string{"10.0.0.2:7001", "10.0.0.3:7001"},
		Raft: RaftConfig{
			Listen:            "0.0.0.0:7000",
			Advertise:         "10.0.0.1:7000",
			HeartbeatTimeout:  sec(1),
			ElectionTimeout:   sec(1),
			SnapshotThreshold: 1024,
			SnapshotInterval:  sec(30),
			MaxVoters:         5,
			VoterReplaceAfter: sec(30),
		},
		GRPC: ListenConfig{Listen: "0.0.0.0:7001", Advertise: "10.0.0.1:7001"},
		HTTP: HTTPConfig{Listen: "0.0.0.0:8008"},
		TLS:  expectedTLS(fx),
		Ctl:  CtlConfig{CAFile: fx.expand("$CA"), CertFile: fx.expand("$OPCERT"), KeyFile: fx.expand("$OPKEY")},
		Postgres: &PostgresConfig{
			BinDir:                  fx.bin,
			DataDir:                 "/var/lib/postgresql/15/main",
			Host:                    "10.0.0.1",
			ListenAddresses:         "*",
			Port:                    5432,
			SocketDir:               "/var/lib/hasidecar/run",
			OSUser:                  "postgres",
			Superuser:               "postgres",
			ReplicationUser:         "replicator",
			SuperuserPasswordFile:   fx.expand("$SUPERPASS"),
			ReplicationPasswordFile: fx.expand("$REPLPASS"),
			AuthMethod:              "scram-sha-256",
			AllowedNetworks:         []string{"10.0.0.0/24"},
			Parameters:              map[string]string{"max_connections": "200", "shared_buffers": "256MB"},
			HBA:                     []string{"host all all 10.0.1.0/24 scram-sha-256"},
			LogFile:                 "/var/lib/hasidecar/postgres.log",
			StartTimeout:            sec(60),
			StopTimeout:             sec(30),
			RestartTimeout:          sec(10),
			WALKeepSize:             1 << 30,
			DiskFullThreshold:       64 << 20,
			MaxSlotWALKeepSize:      16 << 30,
		},
		Timing:               TimingConfig{MonitorInterval: sec(1), Lease: sec(4), DriftMarginPercent: 10},
		Events:               EventsConfig{MaxCount: 1000, MaxAge: Duration(720 * time.Hour)},
		Monitoring:           MonitoringConfig{HistoryRetention: DefaultHistoryRetention, HistoryInterval: DefaultHistoryInterval},
		Failover:             FailoverAutomatic,
		MaximumLagOnFailover: 16 << 20,
		SlotRetention:        Duration(30 * time.Minute),
		EventCommand:         "/usr/local/bin/notify-hasidecar-event",
		EventCommandTimeout:  sec(10),
		LogLevel:             "info",
	}

	explicitZeros := expectedMinimalData(fx)
	explicitZeros.Priority = 0
	explicitZeros.Postgres.RestartTimeout = 0
	explicitZeros.Timing.DriftMarginPercent = 0
	explicitZeros.Events.MaxAge = 0

	nulls := expectedMinimalWitness(fx)

	aliases := expectedMinimalWitness(fx)
	aliases.Tags = []string{"nofailover"}
	aliases.Raft.Listen, aliases.Raft.Advertise = "10.0.0.9:7000", "10.0.0.9:7000"

	sizes := expectedMinimalWitness(fx)
	sizes.MaximumLagOnFailover = 1048576

	ipv6 := expectedMinimalWitness(fx)
	ipv6.Raft.Listen, ipv6.Raft.Advertise = "[::]:7000", "[fd00::9]:7000"
	ipv6.GRPC.Listen, ipv6.GRPC.Advertise = "[fd00::9]:7001", "[fd00::9]:7001"

	operator := expectedMinimalWitness(fx)
	operator.Ctl = CtlConfig{CertFile: fx.expand("$OPCERT"), KeyFile: fx.expand("$OPKEY")}

	tests := []struct {
		name string
		yaml string
		want *Config
	}{
		{"full example", fx.fullYAML(t), full},
		{"minimal data node", dataYAML, expectedMinimalData(fx)},
		{"minimal witness", minimalWitnessYAML, expectedMinimalWitness(fx)},
		{
			name: "explicit zeros stay zero",
			yaml: dataYAML + "  restart_timeout: 0s\npriority: 0\ntiming:\n  drift_margin_percent: 0\nevents:\n  max_age: 0\n",
			want: explicitZeros,
		},
		{
			name: "null values mean absent",
			yaml: minimalWitnessYAML + "priority:\nlocation: ~\ntags: []\ntiming:\nevents: {}\nhttp:\n  listen: \"\"\n",
			want: nulls,
		},
		{
			name: "anchors and aliases",
			yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\njoin: [&addr 10.0.0.1:7001]\ntags: &t [nofailover]\nraft:\n  listen: &raft 10.0.0.9:7000\n  advertise: *raft\ngrpc:\n  listen: 10.0.0.9:7001\n"),
			want: aliases,
		},
		{
			name: "size as a byte count",
			yaml: minimalWitnessYAML + "maximum_lag_on_failover: 1048576\n",
			want: sizes,
		},
		{
			name: "size with a lowercase unit",
			yaml: minimalWitnessYAML + "maximum_lag_on_failover: 1mb\n",
			want: sizes,
		},
		{
			name: "IPv6 addresses",
			yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\njoin: [10.0.0.1:7001]\nraft:\n  listen: \"[::]:7000\"\n  advertise: \"[fd00::9]:7000\"\ngrpc:\n  listen: \"[fd00::9]:7001\"\n"),
			want: ipv6,
		},

		// TLS off, allowed on loopback addresses only.
		{"TLS off on 127.0.0.1", labYAML("127.0.0.1"), expectedLab(fx, "127.0.0.1")},
		{"TLS off on [::1]", labYAML("::1"), expectedLab(fx, "::1")},
		{"TLS off on localhost", labYAML("localhost"), expectedLab(fx, "localhost")},
		{"TLS off in the block form", lab("tls:\n  mode: off\n"), expectedLab(fx, "127.0.0.1")},
		{
			name: "TLS on spelt out",
			yaml: strings.Replace(minimalWitnessYAML, "tls: {", "tls: {mode: on, ", 1),
			want: expectedMinimalWitness(fx),
		},
		{
			name: "ctl with the node's CA",
			yaml: minimalWitnessYAML + "ctl:\n  cert_file: $OPCERT\n  key_file: $OPKEY\n",
			want: operator,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, fx.expand(tc.yaml))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse:\n got %+v\n     %+v\nwant %+v\n     %+v", got, got.Postgres, tc.want, tc.want.Postgres)
			}
			// ApplyDefaults changes nothing on a parsed Config.
			again := *got
			if got.Postgres != nil {
				p := *got.Postgres
				again.Postgres = &p
			}
			again.ApplyDefaults()
			if !reflect.DeepEqual(&again, got) {
				t.Errorf("ApplyDefaults changed a parsed Config:\n got %+v\nwant %+v", again, got)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate on a parsed Config: %v", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	fx := newFixture(t)
	tests := []struct {
		name string
		yaml string
	}{
		{"full example", fx.fullYAML(t)},
		{"minimal data node", dataYAML},
		{"minimal witness", minimalWitnessYAML},
		{"explicit zeros", dataYAML + "  restart_timeout: 0s\n  parameters:\n    shared_preload_libraries: \"\"\n    search_path: '\"$user\", public'\npriority: 0\nevents:\n  max_age: 0s\nmaximum_lag_on_failover: 1000\n"},
		{"odd strings", minimalWitnessYAML + "location: \"123\"\nevent_command: 'notify --event \"x: y\" # not a comment'\n"},
		{"TLS off", labYAML("::1")},
		{"ctl", minimalWitnessYAML + "ctl:\n  ca_file: $CA\n  cert_file: $OPCERT\n  key_file: $OPKEY\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, fx.expand(tc.yaml))
			out, err := cfg.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, err := Parse(out, "marshalled.yaml")
			if err != nil {
				t.Fatalf("Parse(Marshal()): %v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, cfg) {
				t.Errorf("round trip changed the config:\n got %+v\nwant %+v\nYAML:\n%s", back, cfg, out)
			}
		})
	}
}

func TestMarshalFormat(t *testing.T) {
	fx := newFixture(t)
	c := expectedMinimalWitness(fx)
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := fx.expand(`cluster: main
name: w1
kind: witness
state_dir: /var/lib/hasidecar
location: default
priority: 100
bootstrap: false
join:
  - 10.0.0.1:7001
raft:
  listen: 10.0.0.9:7000
  advertise: 10.0.0.9:7000
  heartbeat_timeout: 500ms
  election_timeout: 500ms
  snapshot_threshold: 1024
  snapshot_interval: 30s
  max_voters: 5
  voter_replace_after: 30s
grpc:
  listen: 10.0.0.9:7001
  advertise: 10.0.0.9:7001
tls:
  mode: "on"
  ca_file: $CA
  cert_file: $CERT
  key_file: $KEY
timing:
  monitor_interval: 1s
  lease: 4s
  drift_margin_percent: 10
events:
  max_count: 1000
  max_age: 720h
monitoring:
  history_retention: 168h
  history_interval: 10s
failover: automatic
synchronous: false
maximum_lag_on_failover: 16MB
failover_on_storage_failure: 0s
slot_retention: 30m
event_command_timeout: 10s
log_level: info
log_json: false
`)
	if string(out) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", out, want)
	}
}

func TestApplyDefaults(t *testing.T) {
	t.Run("idempotent", func(t *testing.T) {
		c := &Config{StateDir: "/s", Postgres: &PostgresConfig{Host: "10.0.0.5"}, Raft: RaftConfig{Listen: "10.0.0.5:7000"}, GRPC: ListenConfig{Listen: ":7001"}}
		c.ApplyDefaults()
		first := *c
		p := *c.Postgres
		first.Postgres = &p
		c.ApplyDefaults()
		if !reflect.DeepEqual(c, &first) {
			t.Errorf("second ApplyDefaults changed the config:\n got %+v\nwant %+v", c, first)
		}
		if c.TLS.Mode != TLSModeOn {
			t.Errorf("tls.mode = %q, want %q", c.TLS.Mode, TLSModeOn)
		}
		if c.Raft.Advertise != "10.0.0.5:7000" {
			t.Errorf("raft.advertise = %q, want listen", c.Raft.Advertise)
		}
		if c.GRPC.Advertise != "" {
			t.Errorf("grpc.advertise = %q, want empty (listen has no host)", c.GRPC.Advertise)
		}
		if c.Postgres.ListenAddresses != "10.0.0.5" || c.Postgres.SocketDir != "/s/run" || c.Postgres.LogFile != "/s/postgres.log" {
			t.Errorf("postgres defaults: %+v", c.Postgres)
		}
		if c.Postgres.BinDir != DefaultBinDir() {
			t.Errorf("bin_dir = %q, want DefaultBinDir() %q", c.Postgres.BinDir, DefaultBinDir())
		}
	})
	t.Run("meaningful zeros are kept", func(t *testing.T) {
		c := &Config{Postgres: &PostgresConfig{}}
		c.ApplyDefaults()
		if c.Priority != 0 || c.Postgres.RestartTimeout != 0 || c.Timing.DriftMarginPercent != 0 || c.Events.MaxAge != 0 {
			t.Errorf("ApplyDefaults filled a meaningful zero: priority %d restart_timeout %s drift %d max_age %s",
				c.Priority, c.Postgres.RestartTimeout, c.Timing.DriftMarginPercent, c.Events.MaxAge)
		}
	})
	t.Run("no postgres section is created", func(t *testing.T) {
		c := &Config{}
		c.ApplyDefaults()
		if c.Postgres != nil {
			t.Errorf("ApplyDefaults created a postgres section")
		}
	})
}

func TestHelpers(t *testing.T) {
	fx := newFixture(t)
	c := mustParse(t, fx.expand(dataYAML))
	tests := []struct {
		name, got, want string
	}{
		{"RaftAdvertise", c.RaftAdvertise(), "10.0.0.1:7000"},
		{"GRPCAdvertise", c.GRPCAdvertise(), "10.0.0.1:7001"},
		{"SlotName", (&Config{Name: "pg-east-1"}).SlotName(), "hasidecar_pg_east_1"},
		{"Conninfo", c.Postgres.Conninfo("postgres"), "host=127.0.0.1 port=5432 user=postgres dbname=postgres"},
		{"PostgresConninfo", c.PostgresConninfo(), "host=127.0.0.1 port=5432 user=replicator application_name=pg-1"},
		{"PostgresConninfo witness", (&Config{Kind: KindWitness}).PostgresConninfo(), ""},
		{"Conninfo quoting", (&PostgresConfig{Host: "/run/pg sock", Port: 5433}).Conninfo(`o'b\`), `host='/run/pg sock' port=5433 user='o\'b\\' dbname=postgres`},
		{"Conninfo empty value", (&PostgresConfig{Host: "h", Port: 1}).Conninfo(""), `host=h port=1 user='' dbname=postgres`},
		{"advertise unset", (&Config{Raft: RaftConfig{Listen: "a:1"}, GRPC: ListenConfig{Listen: "a:2"}}).RaftAdvertise(), "a:1"},
		{"grpc advertise unset", (&Config{GRPC: ListenConfig{Listen: "a:2"}}).GRPCAdvertise(), "a:2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
	if c.IsWitness() || !mustParse(t, fx.expand(minimalWitnessYAML)).IsWitness() {
		t.Errorf("IsWitness wrong")
	}
}

func TestLoad(t *testing.T) {
	fx := newFixture(t)
	good := filepath.Join(fx.dir, "good.yaml")
	writeFile(t, good, fx.expand(minimalWitnessYAML), 0o644)
	big := filepath.Join(fx.dir, "big.yaml")
	writeFile(t, big, "# "+strings.Repeat("x", maxFileSize)+"\n", 0o644)
	missing := filepath.Join(fx.dir, "nope.yaml")

	if cfg, err := Load(good); err != nil || cfg.Name != "w1" {
		t.Fatalf("Load(good) = %v, %v", cfg, err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing file", missing, "config " + missing + ": cannot open the file: no such file or directory; check the path given with -c"},
		{"directory", fx.dir, "config " + fx.dir + ": is a directory; give the path of the YAML configuration file"},
		{"too large", big, "config " + big + ": the file is larger than 1 MiB; is this the right file?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Load error = %v, want %s", err, tc.want)
			}
		})
	}
	t.Run("errors name the path", func(t *testing.T) {
		bad := filepath.Join(fx.dir, "bad.yaml")
		writeFile(t, bad, fx.expand(minimalWitnessYAML)+"priority: high\n", 0o644)
		_, err := Load(bad)
		want := "config " + bad + `: line 10: key "priority": expected an integer, got "high"`
		if err == nil || err.Error() != want {
			t.Errorf("Load error = %v, want %s", err, want)
		}
	})
}

// TestClient checks which TLS files the CLI takes from a config: ctl's when
// it names a certificate, with tls.ca_file unless ctl.ca_file is set; else
// the node's own.
func TestClient(t *testing.T) {
	node := TLSConfig{Mode: TLSModeOn, CAFile: "/t/ca.crt", CertFile: "/t/node.crt", KeyFile: "/t/node.key"}
	tests := []struct {
		name string
		tls  TLSConfig
		ctl  CtlConfig
		want TLSConfig
	}{
		{"no ctl section", node, CtlConfig{}, node},
		{"ctl with the node's CA", node, CtlConfig{CertFile: "/t/op.crt", KeyFile: "/t/op.key"},
			TLSConfig{Mode: TLSModeOn, CAFile: "/t/ca.crt", CertFile: "/t/op.crt", KeyFile: "/t/op.key"}},
		{"ctl with its own CA", node, CtlConfig{CAFile: "/t/other.crt", CertFile: "/t/op.crt", KeyFile: "/t/op.key"},
			TLSConfig{Mode: TLSModeOn, CAFile: "/t/other.crt", CertFile: "/t/op.crt", KeyFile: "/t/op.key"}},
		{"ctl CA alone", node, CtlConfig{CAFile: "/t/other.crt"}, node},
		{"TLS off", TLSConfig{Mode: TLSModeOff}, CtlConfig{CertFile: "/t/op.crt", KeyFile: "/t/op.key"}, TLSConfig{Mode: TLSModeOff}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{TLS: tc.tls, Ctl: tc.ctl}
			if got := c.Client(); got != tc.want {
				t.Errorf("Client() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDefaultBinDir(t *testing.T) {
	dir := DefaultBinDir()
	if dir == "" {
		t.Skip("no PostgreSQL server binaries on this machine")
	}
	if !filepath.IsAbs(dir) {
		t.Errorf("DefaultBinDir() = %q, not absolute", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err != nil {
		t.Errorf("DefaultBinDir() = %q has no pg_ctl: %v", dir, err)
	}
}

// TestFullExampleHasEveryKey keeps testdata/full.yaml, the documented
// example, complete: every key of the schema must appear in it.
func TestFullExampleHasEveryKey(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ck := newChecker()
	ck.mapping(doc.Content[0], configType, "")
	if len(ck.issues) > 0 {
		t.Fatalf("issues in full.yaml: %v", ck.issues)
	}
	for _, paths := range allKeys {
		for _, p := range paths {
			if _, ok := ck.lines[p]; !ok {
				t.Errorf("testdata/full.yaml lacks key %q", p)
			}
		}
	}
}
