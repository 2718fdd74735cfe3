package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/internal/pki"
)

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	roleRE      = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	paramNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)
	hostnameRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252}[A-Za-z0-9])?$`)
)

// maxNameLen keeps the replication slot name "hasidecar_<name>" within
// Postgres's 63 bytes.
const maxNameLen = 63 - len(slotPrefix)

// Tags a node may carry.
var validTags = []string{"nofailover", "noloadbalance", "nosync"}

// Binaries postgres.bin_dir must hold.
var requiredBinaries = []string{"postgres", "pg_ctl", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"}

// ManagedParameters are the postgresql.conf settings hasidecar writes
// itself, each with what to do instead: the one list of them. A node's
// postgres.parameters and the cluster's postgresql.parameters (clusterconf)
// may not name them, and the keeper drops them from both before writing
// its managed file. The other settings pgctl.ManagedSettings writes
// (log_line_prefix, max_wal_senders, ...) are defaults a parameter may
// override.
var ManagedParameters = map[string]string{
	"port":                      "set postgres.port instead",
	"listen_addresses":          "set postgres.listen_addresses instead",
	"unix_socket_directories":   "set postgres.socket_dir instead",
	"wal_keep_size":             "set postgres.wal_keep_size instead",
	"max_slot_wal_keep_size":    "set postgres.max_slot_wal_keep_size instead",
	"cluster_name":              "managed by hasidecar (each node's name); remove it",
	"hba_file":                  "managed by hasidecar (add lines with postgres.hba); remove it",
	"ident_file":                "managed by hasidecar; remove it",
	"config_file":               "managed by hasidecar; remove it",
	"data_directory":            "managed by hasidecar (set postgres.data_dir); remove it",
	"primary_conninfo":          "managed by hasidecar; remove it",
	"primary_slot_name":         "managed by hasidecar; remove it",
	"wal_level":                 "managed by hasidecar; remove it",
	"hot_standby":               "managed by hasidecar; remove it",
	"wal_log_hints":             "managed by hasidecar (pg_rewind needs it); remove it",
	"recovery_target_timeline":  "managed by hasidecar (a standby follows the latest timeline); remove it",
	"synchronous_standby_names": "managed by hasidecar (set synchronous: true for synchronous replication); remove it",
}

// HotStandbyParameters are the settings a hot standby must run at least as
// high as its primary (Postgres refuses to start, or pauses replay, on a
// standby with a lower value than the primary's WAL records). A rolling
// restart raising one restarts the standbys first; lowering one, the
// primary first (`hasidecar restart`).
var HotStandbyParameters = []string{
	"max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions", "max_locks_per_transaction",
}

// Validate checks every value; returns an error listing ALL problems, one per line, each naming the key (dotted path, e.g. "timing.lease") and saying what to fix.
//
// Validate does not fill defaults: call ApplyDefaults first on a Config built
// in code. The error is an *Error.
func (c *Config) Validate() error {
	return newError("", c.validate(nil))
}

// validator collects issues; lines (from the file, may be nil) gives the
// line of each key.
type validator struct {
	lines  map[string]int
	issues []Issue
}

func (v *validator) add(key, format string, args ...any) {
	v.addLine(v.lines[key], key, format, args...)
}

func (v *validator) addItem(key string, i int, format string, args ...any) {
	line, ok := v.lines[itemKey(key, i)]
	if !ok {
		line = v.lines[key]
	}
	v.addLine(line, key, format, args...)
}

func (v *validator) addLine(line int, key, format string, args ...any) {
	v.issues = append(v.issues, Issue{Line: line, Key: key, Text: keyText(key, fmt.Sprintf(format, args...))})
}

func (c *Config) validate(lines map[string]int) []Issue {
	v := &validator{lines: lines}

	v.name("cluster", c.Cluster, "the cluster's name, the same on every node")
	v.name("name", c.Name, "this node's name, unique in the cluster")
	if nameRE.MatchString(c.Name) && len(c.Name) > maxNameLen {
		v.add("name", "%s is too long for the replication slot name %q; use at most %d characters", quoteValue(c.Name), c.SlotName(), maxNameLen)
	}
	switch c.Kind {
	case KindData, KindWitness:
	default:
		v.add("kind", "%s is not a kind of node; use %q or %q", quoteValue(c.Kind), KindData, KindWitness)
	}
	stateDirOK := v.absPath("state_dir", c.StateDir, true, "an absolute directory for the Raft log and the sidecar's own files, like /var/lib/hasidecar")
	if c.Location == "" {
		v.add("location", "is empty; give a label for this node's zone or data centre, or remove the key for %q", DefaultLocation)
	}
	if c.Priority < 0 || c.Priority > 1000 {
		v.add("priority", "%d is out of range; use 0 (never promote) to 1000", c.Priority)
	}
	seenTag := map[string]bool{}
	for i, tag := range c.Tags {
		switch {
		case contains(validTags, tag):
			if seenTag[tag] {
				v.addItem("tags", i, "%s is listed twice; keep one", quoteValue(tag))
			}
			seenTag[tag] = true
		default:
			hint := ""
			if s := closest(tag, validTags); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			v.addItem("tags", i, "%s is not a tag%s; use nofailover, noloadbalance or nosync", quoteValue(tag), hint)
		}
	}
	if !c.Bootstrap && len(c.Join) == 0 {
		v.add("join", "empty and bootstrap is false: set bootstrap: true on the first node, or list the gRPC addresses of existing members under join")
	}
	for i, addr := range c.Join {
		if msg := checkHostPort(addr, true); msg != "" {
			v.addItem("join", i, "%s", msg)
		}
	}

	raftPort := v.listen("raft", c.Raft.Listen, c.Raft.Advertise, "7000")
	grpcPort := v.listen("grpc", c.GRPC.Listen, c.GRPC.Advertise, "7001")
	v.duration("raft.heartbeat_timeout", c.Raft.HeartbeatTimeout, 100*time.Millisecond, time.Minute)
	v.duration("raft.election_timeout", c.Raft.ElectionTimeout, 100*time.Millisecond, time.Minute)
	if c.Raft.SnapshotThreshold < 16 {
		v.add("raft.snapshot_threshold", "%d is too small; use at least 16 (default %d)", c.Raft.SnapshotThreshold, DefaultSnapshotThreshold)
	}
	v.duration("raft.snapshot_interval", c.Raft.SnapshotInterval, time.Second, 24*time.Hour)
	switch m := c.Raft.MaxVoters; {
	case m < 1:
		v.add("raft.max_voters", "%d is too small; use an odd number of at least 1: 3 or 5 (default %d) tolerate one or two lost voters", m, DefaultMaxVoters)
	case m%2 == 0:
		v.add("raft.max_voters", "%d is even; use %d or %d: an even number of voters tolerates no more lost voters than one fewer, and needs one more for every commit", m, m-1, m+1)
	}
	v.duration("raft.voter_replace_after", c.Raft.VoterReplaceAfter, 5*time.Second, 24*time.Hour)
	if raftPort != nil && grpcPort != nil && raftPort.clashes(*grpcPort) {
		v.add("grpc.listen", "%s clashes with raft.listen %s; give Raft and gRPC different ports", quoteValue(c.GRPC.Listen), quoteValue(c.Raft.Listen))
	}
	if c.HTTP.Listen != "" {
		if msg := checkHostPort(c.HTTP.Listen, false); msg != "" {
			v.add("http.listen", "%s", msg)
		} else {
			hp := splitListen(c.HTTP.Listen)
			for _, other := range []struct {
				key string
				hp  *hostPort
			}{{"raft.listen", raftPort}, {"grpc.listen", grpcPort}} {
				if other.hp != nil && hp.clashes(*other.hp) {
					v.add("http.listen", "%s clashes with %s; give it a port of its own (or \"\" to turn HTTP off)", quoteValue(c.HTTP.Listen), other.key)
				}
			}
		}
	}

	v.tls(c)

	switch {
	case c.Kind == KindWitness && c.Postgres != nil:
		v.add("postgres", "a witness runs no Postgres: remove the postgres section or set kind: data")
	case c.Kind != KindWitness && c.Postgres == nil:
		v.add("postgres", "required for a data node: set postgres.data_dir at least")
	case c.Postgres != nil:
		v.postgres(c.Postgres, stateDirOK)
	}

	v.duration("timing.monitor_interval", c.Timing.MonitorInterval, 100*time.Millisecond, time.Minute)
	if v.duration("timing.lease", c.Timing.Lease, time.Second, 2*time.Minute) &&
		c.Timing.MonitorInterval > 0 && c.Timing.Lease < 2*c.Timing.MonitorInterval {
		v.add("timing.lease", "%s is shorter than 2 × timing.monitor_interval (%s); raise timing.lease or lower timing.monitor_interval",
			c.Timing.Lease, 2*c.Timing.MonitorInterval)
	}
	if c.Timing.DriftMarginPercent < 0 || c.Timing.DriftMarginPercent > 100 {
		v.add("timing.drift_margin_percent", "%d is out of range; use 0 to 100", c.Timing.DriftMarginPercent)
	}

	if c.Events.MaxCount < 10 || c.Events.MaxCount > 1000000 {
		v.add("events.max_count", "%d is out of range; use 10 to 1000000", c.Events.MaxCount)
	}
	v.durationMsg("monitoring.history_interval", c.Monitoring.HistoryInterval, time.Second, time.Hour, "")
	v.durationMsg("monitoring.history_retention", c.Monitoring.HistoryRetention, time.Hour, 87600*time.Hour, "")
	if c.Events.MaxAge != 0 {
		v.durationMsg("events.max_age", c.Events.MaxAge, time.Minute, 87600*time.Hour, " (or 0s for no age limit)")
	}

	switch c.Failover {
	case FailoverAutomatic, FailoverManual:
	default:
		v.add("failover", "%s is not a failover mode; use %q or %q", quoteValue(c.Failover), FailoverAutomatic, FailoverManual)
	}
	if c.MaximumLagOnFailover == 0 {
		v.add("maximum_lag_on_failover", "0 is too small; use at least 1B (default %s)", DefaultMaximumLagOnFailover)
	}
	if c.FailoverOnStorageFailure != 0 {
		v.durationMsg("failover_on_storage_failure", c.FailoverOnStorageFailure, 5*time.Second, 24*time.Hour, " (or 0s for off)")
	}
	if c.SlotRetention != 0 {
		v.durationMsg("slot_retention", c.SlotRetention, 5*time.Second, 30*24*time.Hour, " (or 0s for off)")
	}
	v.duration("event_command_timeout", c.EventCommandTimeout, time.Second, 10*time.Minute)
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		v.add("log_level", "%s is not a log level; use trace, debug, info, warn or error", quoteValue(c.LogLevel))
	}
	return v.issues
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// name checks a cluster or node name.
func (v *validator) name(key, value, what string) {
	switch {
	case value == "":
		v.add(key, "required: %s", what)
	case !nameRE.MatchString(value):
		v.add(key, "%s is not a valid name; use 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit", quoteValue(value))
	}
}

// role checks a Postgres role or OS user name.
func (v *validator) role(key, value string) {
	if !roleRE.MatchString(value) {
		v.add(key, "%s is not a valid user name; use 1 to 63 lowercase letters, digits or '_', not starting with a digit", quoteValue(value))
	}
}

// absPath checks that a path is given (when required) and absolute; it
// reports whether the path is usable.
func (v *validator) absPath(key, path string, required bool, what string) bool {
	switch {
	case path == "":
		if required {
			v.add(key, "required: %s", what)
		}
		return false
	case !filepath.IsAbs(path):
		v.add(key, "%s is not an absolute path; write the full path, starting with /", quoteValue(path))
		return false
	}
	return true
}

// existingFile checks that a path, given, is absolute and names an
// existing file.
func (v *validator) existingFile(key, path string) {
	if !v.absPath(key, path, false, "") {
		return
	}
	st, err := os.Stat(path)
	switch {
	case err != nil && os.IsNotExist(err):
		v.add(key, "%s does not exist; create it or fix the path", quoteValue(path))
	case err != nil:
		v.add(key, "cannot read %s: %s; check the path and its permissions", quoteValue(path), pathErrText(err))
	case st.IsDir():
		v.add(key, "%s is a directory; give the path of a file", quoteValue(path))
	}
}

// duration checks that d lies in [min, max]; it reports whether it does.
func (v *validator) duration(key string, d Duration, min, max time.Duration) bool {
	return v.durationMsg(key, d, min, max, "")
}

func (v *validator) durationMsg(key string, d Duration, min, max time.Duration, extra string) bool {
	if d.D() < min || d.D() > max {
		v.add(key, "%s is out of range; use a value from %s to %s%s", d, Duration(min), Duration(max), extra)
		return false
	}
	return true
}

// hostPort is a parsed listen address.
type hostPort struct {
	host string
	port int
}

// clashes reports whether two listen addresses would take the same port.
func (a hostPort) clashes(b hostPort) bool {
	return a.port == b.port && (a.host == b.host || isWildcard(a.host) || isWildcard(b.host))
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::" || host == "[::]"
}

// specificHost reports whether addr is host:port with a host peers can dial.
func specificHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && !isWildcard(host)
}

func splitListen(addr string) hostPort {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return hostPort{host: host, port: p}
}

// checkHostPort checks a host:port address; needHost refuses an empty host.
// It returns the problem and what to write, or "".
func checkHostPort(addr string, needHost bool) string {
	example := `write it like "10.0.0.1:7000"`
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return fmt.Sprintf("%s has no port; %s", quoteValue(addr), example)
		}
		return fmt.Sprintf("%s is not host:port; %s (an IPv6 address goes in brackets: \"[::1]:7000\")", quoteValue(addr), example)
	}
	if port == "" {
		return fmt.Sprintf("%s has no port; %s", quoteValue(addr), example)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Sprintf("%s has port %s; use a port from 1 to 65535", quoteValue(addr), quoteValue(port))
	}
	if host == "" {
		if needHost {
			return fmt.Sprintf("%s has no host; %s", quoteValue(addr), example)
		}
		return ""
	}
	if msg := checkHost(host); msg != "" {
		return fmt.Sprintf("%s: %s", quoteValue(addr), msg)
	}
	return ""
}

// checkHost checks a host name or IP address.
func checkHost(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !hostnameRE.MatchString(host) {
		return fmt.Sprintf("%s is not a host name or IP address", quoteValue(host))
	}
	return ""
}

// listen checks a section's listen and advertise addresses; it returns the
// parsed listen address, or nil when it is not valid.
func (v *validator) listen(section, listen, advertise, port string) *hostPort {
	lk, ak := section+".listen", section+".advertise"
	if listen == "" {
		v.add(lk, `required: the host:port to listen on, like "0.0.0.0:%s"`, port)
		return nil
	}
	if msg := checkHostPort(listen, false); msg != "" {
		v.add(lk, "%s", msg)
		return nil
	}
	hp := splitListen(listen)
	switch {
	case advertise == "" && isWildcard(hp.host):
		v.add(ak, "required because %s %s listens on every address; set the host:port other nodes use to reach this one, like \"10.0.0.1:%d\"", lk, quoteValue(listen), hp.port)
	case advertise == "":
	default:
		if msg := checkHostPort(advertise, true); msg != "" {
			v.add(ak, "%s", msg)
		} else if host, _, _ := net.SplitHostPort(advertise); isWildcard(host) {
			v.add(ak, "%s is not an address other nodes can reach; use this host's address, like \"10.0.0.1:%d\"", quoteValue(advertise), hp.port)
		}
	}
	return &hp
}

// tls checks the mutual-TLS settings: on by default, so the three files are
// required unless mode is off, which only loopback addresses may use.
func (v *validator) tls(c *Config) {
	t := c.TLS
	switch t.Mode {
	case TLSModeOn:
	case TLSModeOff:
		if t.HasFiles() {
			v.add("tls.mode", "is off but certificate files are set; remove them, or remove mode: off to use them")
		}
		if c.Ctl != (CtlConfig{}) {
			v.add("ctl", "names a client certificate but tls.mode is off; remove it, or turn TLS on")
		}
		for _, a := range []struct{ key, addr string }{
			{"raft.listen", c.Raft.Listen}, {"raft.advertise", c.Raft.Advertise},
			{"grpc.listen", c.GRPC.Listen}, {"grpc.advertise", c.GRPC.Advertise},
		} {
			// An advertise address copied from listen says nothing new.
			copied := (a.key == "raft.advertise" && a.addr == c.Raft.Listen) || (a.key == "grpc.advertise" && a.addr == c.GRPC.Listen)
			if a.addr != "" && !copied && !isLoopback(a.addr) {
				v.add("tls.mode", "off is allowed only when every listen address is loopback, and %s is %s; issue certificates with `hasidecar tls init` and set tls.ca_file, tls.cert_file and tls.key_file", a.key, quoteValue(a.addr))
			}
		}
		return
	default:
		v.add("tls.mode", "%s is not a TLS mode; use %q (the default) or %q (loopback only)", quoteValue(t.Mode), TLSModeOn, TLSModeOff)
		return
	}
	files := []struct{ key, value string }{
		{"tls.ca_file", t.CAFile}, {"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile},
	}
	var missing []string
	for _, f := range files {
		if f.value == "" {
			missing = append(missing, f.key)
		}
	}
	if len(missing) == len(files) {
		v.add("tls", "required: mutual TLS is on by default; make certificates with `hasidecar tls init --dir DIR --cluster NAME --node NAME=ADDRESS ...` and set tls.ca_file, tls.cert_file and tls.key_file, or set tls: {mode: off} on a loopback-only lab")
		return
	}
	if len(missing) > 0 {
		v.add("tls", "%s not set; set all three of tls.ca_file, tls.cert_file and tls.key_file", strings.Join(missing, " and "))
	}
	for _, f := range files {
		if f.value != "" {
			v.existingFile(f.key, f.value)
		}
	}
	if t.KeyFile != "" {
		v.keyFile("tls.key_file", t.KeyFile)
	}
	ctl := c.Ctl
	if ctl.CertFile != "" || ctl.KeyFile != "" || ctl.CAFile != "" {
		if ctl.CertFile == "" || ctl.KeyFile == "" {
			v.add("ctl", "set both ctl.cert_file and ctl.key_file (the certificate the CLI uses), or neither")
		}
		for _, f := range []struct{ key, value string }{{"ctl.ca_file", ctl.CAFile}, {"ctl.cert_file", ctl.CertFile}, {"ctl.key_file", ctl.KeyFile}} {
			if f.value != "" {
				v.existingFile(f.key, f.value)
			}
		}
		if ctl.KeyFile != "" {
			v.keyFile("ctl.key_file", ctl.KeyFile)
		}
	}
}

// keyFile refuses a private key that others can read, as ssh does.
func (v *validator) keyFile(key, path string) {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return // existingFile says what is wrong
	}
	if err := pki.CheckKeyFile(path); err != nil {
		v.add(key, "%v", err)
	}
}

// isLoopback reports whether host:port names a loopback address.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// postgres checks the postgres section of a data node.
func (v *validator) postgres(p *PostgresConfig, stateDirOK bool) {
	const fix = "set postgres.bin_dir to the directory that holds the PostgreSQL 15 server binaries (Debian: install postgresql-15)"
	switch st, err := os.Stat(p.BinDir); {
	case p.BinDir == "":
		v.add("postgres.bin_dir", "required: no PostgreSQL server binaries found in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or on PATH; %s", fix)
	case !filepath.IsAbs(p.BinDir):
		v.add("postgres.bin_dir", "%s is not an absolute path; %s", quoteValue(p.BinDir), fix)
	case err != nil:
		v.add("postgres.bin_dir", "%s does not exist; %s", quoteValue(p.BinDir), fix)
	case !st.IsDir():
		v.add("postgres.bin_dir", "%s is not a directory; %s", quoteValue(p.BinDir), fix)
	default:
		var missing []string
		for _, b := range requiredBinaries {
			if !isExecutable(filepath.Join(p.BinDir, b)) {
				missing = append(missing, b)
			}
		}
		if len(missing) > 0 {
			v.add("postgres.bin_dir", "%s has no executable %s; %s", quoteValue(p.BinDir), strings.Join(missing, ", "), fix)
		}
	}
	v.absPath("postgres.data_dir", p.DataDir, true, "the absolute path of the Postgres data directory, like /var/lib/postgresql/15/main")
	if p.Host == "" {
		v.add("postgres.host", "required: the address other nodes and clients use to reach this Postgres")
	} else if msg := checkHost(p.Host); msg != "" {
		v.add("postgres.host", "%s; use this host's name or IP address", msg)
	} else if isWildcard(p.Host) {
		v.add("postgres.host", "%s is not an address other nodes can reach; use this host's address (set postgres.listen_addresses to listen on every address)", quoteValue(p.Host))
	}
	if p.ListenAddresses == "" {
		v.add("postgres.listen_addresses", "required: the addresses Postgres listens on, like \"*\" or \"10.0.0.1\"")
	} else {
		for _, a := range strings.Split(p.ListenAddresses, ",") {
			a = strings.TrimSpace(a)
			if a == "*" {
				continue
			}
			if msg := checkHost(a); msg != "" {
				v.add("postgres.listen_addresses", "%s; write a comma-separated list of host names or IP addresses, or \"*\"", msg)
				break
			}
		}
	}
	if p.Port < 1 || p.Port > 65535 {
		v.add("postgres.port", "%d is out of range; use a port from 1 to 65535", p.Port)
	}
	if p.SocketDir != "" || stateDirOK {
		v.absPath("postgres.socket_dir", p.SocketDir, true, "the absolute directory for Postgres's Unix socket")
	}
	v.role("postgres.os_user", p.OSUser)
	v.role("postgres.superuser", p.Superuser)
	v.role("postgres.replication_user", p.ReplicationUser)
	switch p.AuthMethod {
	case "scram-sha-256", "md5":
		for _, f := range []struct{ key, value, who string }{
			{"postgres.superuser_password_file", p.SuperuserPasswordFile, "superuser"},
			{"postgres.replication_password_file", p.ReplicationPasswordFile, "replication user"},
		} {
			if f.value == "" {
				v.add(f.key, "required when postgres.auth_method is %s: the absolute path of a file holding the %s's password on one line (or set postgres.auth_method: trust, for a local lab only)", p.AuthMethod, f.who)
				continue
			}
			v.existingFile(f.key, f.value)
		}
	case "trust":
		if p.SuperuserPasswordFile != "" {
			v.existingFile("postgres.superuser_password_file", p.SuperuserPasswordFile)
		}
		if p.ReplicationPasswordFile != "" {
			v.existingFile("postgres.replication_password_file", p.ReplicationPasswordFile)
		}
	default:
		v.add("postgres.auth_method", "%s is not an authentication method; use scram-sha-256, md5 or trust", quoteValue(p.AuthMethod))
	}
	for i, n := range p.AllowedNetworks {
		pfx, err := netip.ParsePrefix(n)
		switch {
		case err != nil:
			v.addItem("postgres.allowed_networks", i, "%s is not a network in CIDR form; write it like \"10.0.0.0/24\" (or \"10.0.0.5/32\" for one host)", quoteValue(n))
		case pfx != pfx.Masked():
			v.addItem("postgres.allowed_networks", i, "%s has bits set after the prefix length; write %q (or \"%s/%d\" for one host)", quoteValue(n), pfx.Masked().String(), pfx.Addr(), pfx.Addr().BitLen())
		}
	}
	for _, name := range sortedKeys(p.Parameters) {
		key := "postgres.parameters." + name
		switch {
		case ManagedParameters[name] != "":
			v.add(key, "%s", ManagedParameters[name])
		case !paramNameRE.MatchString(name):
			v.add(key, "not a Postgres parameter name; write it in lowercase letters, digits, '_' and '.', like shared_buffers")
		case strings.ContainsAny(p.Parameters[name], "\n\r\x00"):
			v.add(key, "the value holds a line break; write it on one line")
		}
	}
	for i, line := range p.HBA {
		switch {
		case strings.TrimSpace(line) == "":
			v.addItem("postgres.hba", i, "an empty line; write a pg_hba.conf line like \"host all all 10.0.0.0/24 scram-sha-256\", or remove it")
		case strings.ContainsAny(line, "\n\r\x00"):
			v.addItem("postgres.hba", i, "%s holds a line break; give each pg_hba.conf line as its own list item", quoteValue(line))
		}
	}
	if p.LogFile != "" || stateDirOK {
		v.absPath("postgres.log_file", p.LogFile, true, "the absolute path of Postgres's log file")
	}
	v.duration("postgres.start_timeout", p.StartTimeout, time.Second, time.Hour)
	v.duration("postgres.stop_timeout", p.StopTimeout, time.Second, time.Hour)
	v.durationMsg("postgres.restart_timeout", p.RestartTimeout, 0, 10*time.Minute, " (0s: release the lease at once)")
	if p.WALKeepSize == 0 {
		v.add("postgres.wal_keep_size", "0 is too small; use at least 1B (default %s)", DefaultWALKeepSize)
	}
	if p.DiskFullThreshold < 1<<20 {
		v.add("postgres.disk_full_threshold", "%s is too small; use at least 1MB (default %s)", p.DiskFullThreshold, DefaultDiskFullThreshold)
	}
}

// LowersHotStandby reports whether a pending value of a setting lowers one
// of HotStandbyParameters below its running value (both integers, as
// pg_settings and the files give them; anything else is not a lowering).
func LowersHotStandby(name, running, pending string) bool {
	if !slices.Contains(HotStandbyParameters, name) {
		return false
	}
	r, err1 := strconv.ParseInt(strings.TrimSpace(running), 10, 64)
	p, err2 := strconv.ParseInt(strings.TrimSpace(strings.Trim(pending, "'")), 10, 64)
	return err1 == nil && err2 == nil && p < r
}
