package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Defaults. Those marked "when absent" have a meaningful zero, so Parse
// fills them only when the key is missing from the file, and ApplyDefaults
// leaves them alone.
const (
	DefaultLocation = "default"
	DefaultPriority = 100 // when absent; 0 never promotes
	// 500 ms, not hashicorp/raft's 1 s: replacing a dead Raft leader takes
	// up to about 2 × the heartbeat timeout (every surviving voter must
	// time out before one grants a vote), and that must fit well inside
	// what a 4 s lease leaves after its lease/3 renewal phase and the
	// fencing margin, or a leader's death fences a healthy primary (the
	// chaos test's witness-kill caught it with 1 s).
	DefaultHeartbeatTimeout  = Duration(500 * time.Millisecond)
	DefaultElectionTimeout   = Duration(500 * time.Millisecond)
	DefaultSnapshotThreshold = 1024
	DefaultSnapshotInterval  = Duration(30 * time.Second)
	// The same as fsm.DefaultMaxVoters and fsm.DefaultVoterReplaceAfter
	// (what a cluster's settings without them mean).
	DefaultMaxVoters            = 5
	DefaultVoterReplaceAfter    = Duration(30 * time.Second)
	DefaultPostgresHost         = "127.0.0.1"
	DefaultPostgresPort         = 5432
	DefaultOSUser               = "postgres"
	DefaultSuperuser            = "postgres"
	DefaultReplicationUser      = "replicator"
	DefaultAuthMethod           = "scram-sha-256"
	DefaultAllowedNetwork       = "127.0.0.1/32"
	DefaultStartTimeout         = Duration(60 * time.Second)
	DefaultStopTimeout          = Duration(30 * time.Second)
	DefaultRestartTimeout       = Duration(10 * time.Second) // when absent; 0 releases the lease at once
	DefaultWALKeepSize          = ByteSize(1 << 30)
	DefaultDiskFullThreshold    = ByteSize(64 << 20)
	DefaultMaxSlotWALKeepSize   = ByteSize(16 << 30)
	DefaultSlotRetention        = Duration(30 * time.Minute) // when absent; 0 turns it off
	DefaultMonitorInterval      = Duration(time.Second)
	DefaultLease                = Duration(4 * time.Second)
	DefaultDriftMarginPercent   = 10 // when absent
	DefaultEventsMaxCount       = 1000
	DefaultEventsMaxAge         = Duration(720 * time.Hour) // when absent; 0 keeps events of any age
	DefaultHistoryRetention     = Duration(7 * 24 * time.Hour)
	DefaultHistoryInterval      = Duration(10 * time.Second)
	DefaultMaximumLagOnFailover = ByteSize(16 << 20)
	DefaultEventCommandTimeout  = Duration(10 * time.Second)
	DefaultLogLevel             = "info"
)

// ApplyDefaults fills zero values with defaults (idempotent).
//
// Empty strings and lists, and zero numbers, durations and sizes, get their
// defaults, except where zero is a setting of its own: priority (0: never
// promote), postgres.restart_timeout (0: release the lease at once),
// timing.drift_margin_percent and events.max_age (0: no age limit). Those
// are left as they are: Parse fills them only when the key is absent, and
// code that builds a Config should set them (see DefaultPriority and the
// other Default constants). On a Config returned by Parse it changes nothing.
//
// The postgres section is filled when present; it is not created.
func (c *Config) ApplyDefaults() { c.fill(nil) }

// fill applies the defaults. present is nil for a Config built in code (a
// zero value means unset); after parsing it lists the keys given in the file,
// so that an explicit zero is kept (and then validated).
func (c *Config) fill(present map[string]bool) {
	// unset: should the default replace the current value of key?
	unset := func(key string, zero bool) bool {
		if present == nil {
			return zero
		}
		return !present[key]
	}
	// absent: for keys whose zero is meaningful, only a missing key is unset.
	absent := func(key string) bool { return present != nil && !present[key] }

	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(key string, p *Duration, v Duration) {
		if unset(key, *p == 0) {
			*p = v
		}
	}

	setStr(&c.Kind, KindData)
	setStr(&c.TLS.Mode, TLSModeOn)
	setStr(&c.Location, DefaultLocation)
	if absent("priority") {
		c.Priority = DefaultPriority
	}

	setDur("raft.heartbeat_timeout", &c.Raft.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setDur("raft.election_timeout", &c.Raft.ElectionTimeout, DefaultElectionTimeout)
	if unset("raft.snapshot_threshold", c.Raft.SnapshotThreshold == 0) {
		c.Raft.SnapshotThreshold = DefaultSnapshotThreshold
	}
	setDur("raft.snapshot_interval", &c.Raft.SnapshotInterval, DefaultSnapshotInterval)
	if unset("raft.max_voters", c.Raft.MaxVoters == 0) {
		c.Raft.MaxVoters = DefaultMaxVoters
	}
	setDur("raft.voter_replace_after", &c.Raft.VoterReplaceAfter, DefaultVoterReplaceAfter)
	if c.Raft.Advertise == "" && specificHost(c.Raft.Listen) {
		c.Raft.Advertise = c.Raft.Listen
	}
	if c.GRPC.Advertise == "" && specificHost(c.GRPC.Listen) {
		c.GRPC.Advertise = c.GRPC.Listen
	}

	if p := c.Postgres; p != nil {
		setStr(&p.BinDir, DefaultBinDir())
		setStr(&p.Host, DefaultPostgresHost)
		setStr(&p.ListenAddresses, p.Host)
		if unset("postgres.port", p.Port == 0) {
			p.Port = DefaultPostgresPort
		}
		if filepath.IsAbs(c.StateDir) {
			setStr(&p.SocketDir, filepath.Join(c.StateDir, "run"))
			setStr(&p.LogFile, filepath.Join(c.StateDir, "postgres.log"))
		}
		setStr(&p.OSUser, DefaultOSUser)
		setStr(&p.Superuser, DefaultSuperuser)
		setStr(&p.ReplicationUser, DefaultReplicationUser)
		setStr(&p.AuthMethod, DefaultAuthMethod)
		if len(p.AllowedNetworks) == 0 {
			p.AllowedNetworks = []string{DefaultAllowedNetwork}
		}
		setDur("postgres.start_timeout", &p.StartTimeout, DefaultStartTimeout)
		setDur("postgres.stop_timeout", &p.StopTimeout, DefaultStopTimeout)
		if absent("postgres.restart_timeout") {
			p.RestartTimeout = DefaultRestartTimeout
		}
		if unset("postgres.wal_keep_size", p.WALKeepSize == 0) {
			p.WALKeepSize = DefaultWALKeepSize
		}
		if unset("postgres.disk_full_threshold", p.DiskFullThreshold == 0) {
			p.DiskFullThreshold = DefaultDiskFullThreshold
		}
		if absent("postgres.max_slot_wal_keep_size") {
			p.MaxSlotWALKeepSize = DefaultMaxSlotWALKeepSize
		}
	}

	if absent("slot_retention") {
		c.SlotRetention = DefaultSlotRetention
	}
	setDur("timing.monitor_interval", &c.Timing.MonitorInterval, DefaultMonitorInterval)
	setDur("timing.lease", &c.Timing.Lease, DefaultLease)
	if absent("timing.drift_margin_percent") {
		c.Timing.DriftMarginPercent = DefaultDriftMarginPercent
	}
	if unset("events.max_count", c.Events.MaxCount == 0) {
		c.Events.MaxCount = DefaultEventsMaxCount
	}
	if absent("events.max_age") {
		c.Events.MaxAge = DefaultEventsMaxAge
	}
	setDur("monitoring.history_retention", &c.Monitoring.HistoryRetention, DefaultHistoryRetention)
	setDur("monitoring.history_interval", &c.Monitoring.HistoryInterval, DefaultHistoryInterval)

	setStr(&c.Failover, FailoverAutomatic)
	if unset("maximum_lag_on_failover", c.MaximumLagOnFailover == 0) {
		c.MaximumLagOnFailover = DefaultMaximumLagOnFailover
	}
	setDur("event_command_timeout", &c.EventCommandTimeout, DefaultEventCommandTimeout)
	setStr(&c.LogLevel, DefaultLogLevel)
}

// DefaultBinDir returns the first of /usr/lib/postgresql/{17,16,15}/bin and
// /usr/pgsql-{17,16,15}/bin that holds the server binaries (postgres and
// pg_ctl: Debian's client packages fill the same directory with client
// tools only), else the directory of pg_ctl on PATH (after following
// symbolic links), else "".
func DefaultBinDir() string {
	for _, dir := range []string{
		"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin",
		"/usr/pgsql-17/bin", "/usr/pgsql-16/bin", "/usr/pgsql-15/bin",
	} {
		if isExecutable(filepath.Join(dir, "postgres")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// /usr/local/bin/pg_ctl is often a link into the real directory,
		// which holds the other binaries too.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if abs, err := filepath.Abs(p); err == nil {
			return filepath.Dir(abs)
		}
	}
	return ""
}

// isExecutable reports whether path is a regular file (following symbolic
// links) with an execute bit set.
func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
