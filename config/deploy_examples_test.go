package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deployment kit under deploy/ must never drift from the configuration
// schema: every example is parsed with Parse, strictly, so an unknown or
// misspelt key (or a value the validator refuses) fails this test. The
// examples name files that exist only on a real host (the password files,
// the TLS files, the PostgreSQL bin_dir); the test re-roots those paths
// under a temporary directory where it creates them (fake executables for
// bin_dir), and checks separately that, without that help, the only problems
// Parse finds are with those paths.

const deployExDir = "../deploy"

// deployExHost is what the README promises about each example.
type deployExHost struct {
	ip, zone, kind string
}

var deployExHosts = map[string]deployExHost{
	"pg1":     {"10.0.1.11", "zone-a", KindData},
	"pg2":     {"10.0.1.12", "zone-b", KindData},
	"pg3":     {"10.0.1.13", "zone-b", KindData},
	"witness": {"10.0.2.10", "zone-c", KindWitness},
}

// Ports of the kit, the same on every host.
const (
	deployExPostgresPort = "5432"
	deployExGRPCPort     = "7400"
	deployExRaftPort     = "7401"
	deployExHTTPPort     = "8008"
)

// deployExFileKeys are the keys whose paths must exist for Parse to accept a
// file (they are checked on disk); on a machine without them these are the
// only keys Parse may complain about.
var deployExFileKeys = []string{
	"postgres.bin_dir",
	"postgres.superuser_password_file",
	"postgres.replication_password_file",
	"tls.ca_file",
	"tls.cert_file",
	"tls.key_file",
	"ctl.ca_file",
	"ctl.cert_file",
	"ctl.key_file",
}

func TestDeployExamples(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(deployExDir, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no examples found in %s/examples", deployExDir)
	}
	// The files are parsed here rather than in subtests, so that every
	// subtest below sees all of them whatever -run selects.
	cfgs := map[string]*Config{}
	for _, path := range paths {
		stem := strings.TrimSuffix(filepath.Base(path), ".yaml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := deployExParse(t, data, path)
		if cfg == nil {
			continue
		}
		deployExOnlyMissingFiles(t, data, path)
		if cfg.Name != stem {
			t.Errorf("%s: name is %q: keep it the same as the file's name", path, cfg.Name)
		}
		cfgs[stem] = cfg
	}
	for name := range deployExHosts {
		if _, err := os.Stat(filepath.Join(deployExDir, "examples", name+".yaml")); err != nil {
			t.Errorf("the kit lacks an example for %s: %v", name, err)
		}
	}
	if t.Failed() {
		return
	}
	t.Run("topology", func(t *testing.T) { deployExCheckTopology(t, cfgs) })
	t.Run("systemd", func(t *testing.T) { deployExCheckSystemd(t, cfgs) })
	t.Run("haproxy", func(t *testing.T) { deployExCheckHAProxy(t, cfgs) })
}

// deployExParse parses an example with the paths of deployExFileKeys
// re-rooted under a temporary directory where they exist, and returns the
// Config with the example's own paths put back; nil (and the test marked
// failed) when it does not parse.
func deployExParse(t *testing.T, data []byte, source string) *Config {
	t.Helper()
	// A lenient decode, only to learn the paths; the strict one is Parse,
	// which reports any problem this one meets, with its key and line.
	var raw Config
	_ = yaml.Unmarshal(data, &raw)
	root := t.TempDir()
	var files []string
	binDir := ""
	files = append(files, raw.TLS.CAFile, raw.TLS.CertFile, raw.TLS.KeyFile)
	files = append(files, raw.Ctl.CAFile, raw.Ctl.CertFile, raw.Ctl.KeyFile)
	if p := raw.Postgres; p != nil {
		files = append(files, p.SuperuserPasswordFile, p.ReplicationPasswordFile)
		binDir = p.BinDir
	}
	moved := map[string]string{}
	for _, f := range files {
		if !filepath.IsAbs(f) {
			continue // absent, or an error Parse reports as it is
		}
		dst := filepath.Join(root, f)
		deployExWrite(t, dst, "example-secret\n", 0o600)
		moved[f] = dst
	}
	if filepath.IsAbs(binDir) {
		dst := filepath.Join(root, binDir)
		for _, b := range requiredBinaries {
			deployExWrite(t, filepath.Join(dst, b), "#!/bin/sh\nexit 0\n", 0o755)
		}
		moved[binDir] = dst
	}
	// One pass, longest path first, so that no path is rewritten twice.
	from := make([]string, 0, len(moved))
	for f := range moved {
		from = append(from, f)
	}
	sort.Slice(from, func(i, j int) bool { return len(from[i]) > len(from[j]) })
	var pairs []string
	for _, f := range from {
		pairs = append(pairs, f, moved[f])
	}
	text := strings.NewReplacer(pairs...).Replace(string(data))

	cfg, err := Parse([]byte(text), source)
	if err != nil {
		t.Errorf("the example does not parse (with its password, TLS and bin_dir paths created in a temporary directory):\n%v", err)
		return nil
	}
	back := func(p *string) { *p = strings.TrimPrefix(*p, root) }
	back(&cfg.TLS.CAFile)
	back(&cfg.TLS.CertFile)
	back(&cfg.TLS.KeyFile)
	back(&cfg.Ctl.CAFile)
	back(&cfg.Ctl.CertFile)
	back(&cfg.Ctl.KeyFile)
	if p := cfg.Postgres; p != nil {
		back(&p.BinDir)
		back(&p.SuperuserPasswordFile)
		back(&p.ReplicationPasswordFile)
	}
	return cfg
}

// deployExOnlyMissingFiles parses the example as it is: on this machine the
// host's files may be missing, and nothing else may be wrong.
func deployExOnlyMissingFiles(t *testing.T, data []byte, source string) {
	t.Helper()
	_, err := Parse(data, source)
	if err == nil {
		return
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Errorf("%s: Parse returned %T, want *Error: %v", source, err, err)
		return
	}
	for _, is := range ce.Issues {
		if !slices.Contains(deployExFileKeys, is.Key) {
			t.Errorf("%s: %s (only missing files named by %s are expected here)", source, is, strings.Join(deployExFileKeys, ", "))
		}
	}
}

func deployExWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func deployExAddr(ip, port string) string { return ip + ":" + port }

// deployExCheckTopology checks that the four files describe one cluster the
// way the README does.
func deployExCheckTopology(t *testing.T, cfgs map[string]*Config) {
	names := make([]string, 0, len(cfgs))
	for n := range cfgs {
		names = append(names, n)
	}
	sort.Strings(names)
	ref := cfgs["pg1"]
	var dataNodes []string
	eventCommand := false
	for _, name := range names {
		c := cfgs[name]
		h, ok := deployExHosts[name]
		if !ok {
			t.Errorf("%s: not a host of the README (%v); add it to deployExHosts", name, deployExHosts)
			continue
		}
		errorf := func(format string, args ...any) {
			t.Helper()
			t.Errorf(name+".yaml: "+format, args...)
		}
		if c.Cluster != ref.Cluster {
			errorf("cluster %q, pg1 says %q", c.Cluster, ref.Cluster)
		}
		if c.Kind != h.kind || c.Location != h.zone {
			errorf("kind %q location %q, want %q %q", c.Kind, c.Location, h.kind, h.zone)
		}
		if c.StateDir != "/var/lib/hasidecar" {
			errorf("state_dir %q, want /var/lib/hasidecar", c.StateDir)
		}
		if got, want := c.RaftAdvertise(), deployExAddr(h.ip, deployExRaftPort); got != want {
			errorf("Raft address %q, want %q", got, want)
		}
		if got, want := c.GRPCAdvertise(), deployExAddr(h.ip, deployExGRPCPort); got != want {
			errorf("gRPC address %q, want %q", got, want)
		}
		if got, want := c.HTTP.Listen, deployExAddr(h.ip, deployExHTTPPort); got != want {
			errorf("http.listen %q, want %q", got, want)
		}
		if c.Bootstrap != (name == "pg1") {
			errorf("bootstrap is %t; only pg1 bootstraps", c.Bootstrap)
		}
		var others []string
		for _, o := range names {
			if o != name {
				others = append(others, deployExAddr(deployExHosts[o].ip, deployExGRPCPort))
			}
		}
		if join := slices.Sorted(slices.Values(c.Join)); !slices.Equal(join, others) {
			errorf("join %v, want the other members' gRPC addresses %v", c.Join, others)
		}
		if c.TLS.Mode != TLSModeOn {
			errorf("tls.mode is %q: the kit runs gRPC and Raft with mutual TLS", c.TLS.Mode)
		}
		for _, f := range []string{c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile} {
			if !strings.HasPrefix(f, "/etc/hasidecar/") {
				errorf("TLS file %q is not under /etc/hasidecar/", f)
			}
		}
		for _, f := range []string{c.Ctl.CAFile, c.Ctl.CertFile, c.Ctl.KeyFile} {
			if f != "" && !strings.HasPrefix(f, "/etc/hasidecar/") {
				errorf("ctl file %q is not under /etc/hasidecar/", f)
			}
		}
		if !reflect.DeepEqual(c.Timing, ref.Timing) {
			errorf("timing %+v differs from pg1's %+v: every sidecar times leases with its own", c.Timing, ref.Timing)
		}
		if c.EventCommand != "" {
			eventCommand = true
		}
		if c.Kind == KindWitness {
			continue
		}
		dataNodes = append(dataNodes, name)
		p := c.Postgres
		if p.Host != h.ip || p.Port != 5432 {
			errorf("postgres at %s:%d, want %s:%s", p.Host, p.Port, h.ip, deployExPostgresPort)
		}
		if p.DataDir != "/var/lib/postgresql/15/main" || p.BinDir != "/usr/lib/postgresql/15/bin" {
			errorf("data_dir %q bin_dir %q, want the Debian PostgreSQL 15 paths", p.DataDir, p.BinDir)
		}
		if p.AuthMethod != "scram-sha-256" {
			errorf("auth_method %q, want scram-sha-256", p.AuthMethod)
		}
		for _, f := range []string{p.SuperuserPasswordFile, p.ReplicationPasswordFile} {
			if !strings.HasPrefix(f, "/etc/hasidecar/") {
				errorf("password file %q is not under /etc/hasidecar/", f)
			}
		}
		if !slices.Equal(p.AllowedNetworks, []string{"10.0.0.0/16"}) {
			errorf("allowed_networks %v, want [10.0.0.0/16]", p.AllowedNetworks)
		}
		// Every data node must be let in by every other one's pg_hba.
		for _, o := range deployExHosts {
			if o.kind != KindData {
				continue
			}
			addr := netip.MustParseAddr(o.ip)
			if !slices.ContainsFunc(p.AllowedNetworks, func(n string) bool { return netip.MustParsePrefix(n).Contains(addr) }) {
				errorf("allowed_networks %v leave out data node %s", p.AllowedNetworks, o.ip)
			}
		}
		r := ref.Postgres
		if !reflect.DeepEqual(p.Parameters, r.Parameters) {
			errorf("postgres.parameters %v differ from pg1's %v: a standby needs max_connections and friends >= the primary's", p.Parameters, r.Parameters)
		}
		if p.ReplicationUser != r.ReplicationUser || p.Superuser != r.Superuser ||
			p.ReplicationPasswordFile != r.ReplicationPasswordFile || p.SuperuserPasswordFile != r.SuperuserPasswordFile {
			errorf("roles or password files differ from pg1's")
		}
	}
	if len(dataNodes) != 3 {
		t.Errorf("data nodes %v, want pg1, pg2, pg3", dataNodes)
	}
	if !eventCommand {
		t.Errorf("no example shows event_command")
	}
}

// deployExSystemdValue returns the value of key= in the unit, "" when absent.
func deployExSystemdValue(unit, key string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `=(.*)$`).FindStringSubmatch(unit)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// deployExCheckSystemd checks the unit against the configs: the sidecar must
// have time to stop Postgres and release the lease before systemd kills it.
func deployExCheckSystemd(t *testing.T, cfgs map[string]*Config) {
	data, err := os.ReadFile(filepath.Join(deployExDir, "systemd", "hasidecar.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	if got := deployExSystemdValue(unit, "ExecStart"); got != "/usr/local/bin/hasidecar agent -c /etc/hasidecar/hasidecar.yaml" {
		t.Errorf("ExecStart=%s", got)
	}
	if got := deployExSystemdValue(unit, "KillMode"); got != "mixed" && got != "process" {
		t.Errorf("KillMode=%s: want mixed (or process) so that SIGTERM goes to the sidecar alone", got)
	}
	for _, key := range []string{"Restart", "RestartSec", "LimitNOFILE", "After"} {
		if deployExSystemdValue(unit, key) == "" {
			t.Errorf("%s= missing", key)
		}
	}
	stop := deployExSystemdValue(unit, "TimeoutStopSec")
	d, err := time.ParseDuration(stop)
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: want a value with a unit, like 90s (%v)", stop, err)
	}
	// The sidecar's own budget for leaving (node.shutdown): stop_timeout + 10s.
	for name, c := range cfgs {
		if c.Postgres == nil {
			continue
		}
		if need := c.Postgres.StopTimeout.D() + 10*time.Second; d <= need {
			t.Errorf("TimeoutStopSec=%s is not above %s's postgres.stop_timeout + 10s (%s)", stop, name, need)
		}
	}
}

// deployExCheckHAProxy checks that both listeners route to every data node
// through its sidecar's health endpoint, and never to the witness.
func deployExCheckHAProxy(t *testing.T, cfgs map[string]*Config) {
	data, err := os.ReadFile(filepath.Join(deployExDir, "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // "listen NAME" -> body
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			cur = trimmed
			continue
		}
		if cur != "" && !strings.HasPrefix(trimmed, "#") {
			sections[cur] += trimmed + "\n"
		}
	}
	for _, l := range []struct{ bind, check string }{{"*:5000", "/primary"}, {"*:5001", "/replica?lag=16MB"}} {
		var body string
		for _, b := range sections {
			if strings.Contains(b, "bind "+l.bind+"\n") {
				body = b
			}
		}
		if body == "" {
			t.Errorf("no listener binds %s", l.bind)
			continue
		}
		if !strings.Contains(body, "option httpchk GET "+l.check+"\n") || !strings.Contains(body, "http-check expect status 200") {
			t.Errorf("listener %s does not check %s for 200", l.bind, l.check)
		}
		if !strings.Contains(body, "on-marked-down shutdown-sessions") {
			t.Errorf("listener %s: no on-marked-down shutdown-sessions", l.bind)
		}
		for name, c := range cfgs {
			_, httpPort, _ := strings.Cut(c.HTTP.Listen, ":")
			server := "server " + name + " " + deployExAddr(deployExHosts[name].ip, deployExPostgresPort) + " check port " + httpPort
			has := strings.Contains(body, server+"\n") || strings.Contains(body, server+" ")
			if c.Postgres != nil && !has {
				t.Errorf("listener %s lacks %q", l.bind, server)
			}
			if c.Postgres == nil && strings.Contains(body, deployExHosts[name].ip) {
				t.Errorf("listener %s lists the witness %s, which has no Postgres", l.bind, name)
			}
		}
	}
}
