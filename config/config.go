// Package config holds the sidecar's configuration: one YAML file per
// sidecar, decoded strictly (an unknown key is an error naming the key and its
// line), with defaults filled in and every value validated at start with a
// message that says what to fix.
//
// Cluster-wide settings (failover mode, lease, event retention, maximum lag on
// failover, synchronous mode) are read from the bootstrapping node's file
// into the replicated FSM; on every other node they only matter until it
// joins. They can be changed later through the CLI.
package config

import "time"

// Kinds of node.
const (
	KindData    = "data"
	KindWitness = "witness"
)

// Failover modes.
const (
	FailoverAutomatic = "automatic"
	FailoverManual    = "manual"
)

// Config is one sidecar's configuration after defaults and validation.
type Config struct {
	// Cluster is the cluster's name; a node presenting another name is refused.
	Cluster string `yaml:"cluster"`
	// Name is this node's name, unique in the cluster (Raft server ID).
	Name string `yaml:"name"`
	// Kind is "data" (a Postgres host) or "witness" (Raft voter, no Postgres).
	Kind string `yaml:"kind"`
	// StateDir holds the Raft log, snapshots and the sidecar's own files.
	StateDir string `yaml:"state_dir"`
	// Location is a free-form label (zone, data centre).
	Location string `yaml:"location"`
	// Priority for promotion: 0 never promotes; higher wins ties.
	Priority int `yaml:"priority"`
	// Tags: "nofailover" keeps the node from ever being promoted.
	Tags []string `yaml:"tags"`
	// Bootstrap lets this node start a new cluster when it has no Raft state
	// and no address in Join answers with an existing cluster.
	Bootstrap bool `yaml:"bootstrap"`
	// Join lists gRPC addresses (host:port) of existing members.
	Join []string `yaml:"join"`

	Raft     RaftConfig      `yaml:"raft"`
	GRPC     ListenConfig    `yaml:"grpc"`
	HTTP     HTTPConfig      `yaml:"http"`
	TLS      TLSConfig       `yaml:"tls"`
	Ctl      CtlConfig       `yaml:"ctl"`
	Postgres *PostgresConfig `yaml:"postgres"`
	Timing   TimingConfig    `yaml:"timing"`
	Events   EventsConfig    `yaml:"events"`
	// Monitoring: this sidecar's own monitoring history on disk.
	Monitoring MonitoringConfig `yaml:"monitoring"`

	// Failover is "automatic" or "manual" (cluster-wide).
	Failover string `yaml:"failover"`
	// Synchronous replication mode (cluster-wide).
	Synchronous bool `yaml:"synchronous"`
	// MaximumLagOnFailover in bytes (cluster-wide); a standby further behind
	// the primary's last known LSN is not promoted in asynchronous mode.
	MaximumLagOnFailover ByteSize `yaml:"maximum_lag_on_failover"`
	// FailoverOnStorageFailure (cluster-wide; 0: off): a primary whose disk
	// has been full this long fences its Postgres and releases its lease,
	// when a standby could take over.
	FailoverOnStorageFailure Duration `yaml:"failover_on_storage_failure"`
	// SlotRetention (cluster-wide; 0: off): a standby whose slot on the
	// primary has been inactive this long loses it, is marked needs
	// re-clone and clones afresh when it returns, so that a standby that
	// stays down cannot fill the primary's pg_wal.
	SlotRetention Duration `yaml:"slot_retention"`

	// EventCommand runs on every event (like repmgr's event_notification_command).
	EventCommand        string   `yaml:"event_command"`
	EventCommandTimeout Duration `yaml:"event_command_timeout"`

	LogLevel string `yaml:"log_level"`
	LogJSON  bool   `yaml:"log_json"`
}

// RaftConfig is the Raft transport and timing.
type RaftConfig struct {
	Listen            string   `yaml:"listen"`
	Advertise         string   `yaml:"advertise"`
	HeartbeatTimeout  Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout   Duration `yaml:"election_timeout"`
	SnapshotThreshold uint64   `yaml:"snapshot_threshold"`
	SnapshotInterval  Duration `yaml:"snapshot_interval"`
	// MaxVoters (cluster-wide, odd): at most this many Raft voters; further
	// members are non-voters, promoted when a voter goes.
	MaxVoters int `yaml:"max_voters"`
	// VoterReplaceAfter (cluster-wide): a voter whose reports have not
	// reached the Raft leader this long is replaced by a healthy non-voter.
	VoterReplaceAfter Duration `yaml:"voter_replace_after"`
}

// ListenConfig is a listen address and the address peers should use.
type ListenConfig struct {
	Listen    string `yaml:"listen"`
	Advertise string `yaml:"advertise"`
}

// HTTPConfig is the health and metrics endpoint ("" disables it).
type HTTPConfig struct {
	Listen string `yaml:"listen"`
}

// TLS modes.
const (
	TLSModeOn  = "on"
	TLSModeOff = "off"
)

// TLSConfig is mutual TLS for gRPC and the Raft transport: on unless the
// file says mode: off (allowed on loopback addresses only).
type TLSConfig struct {
	Mode     string `yaml:"mode"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether mutual TLS is on.
func (t TLSConfig) Enabled() bool { return t.Mode != TLSModeOff }

// HasFiles reports whether any certificate file is named.
func (t TLSConfig) HasFiles() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// CtlConfig is the certificate the CLI uses when given this file with -c
// (like patronictl's ctl: section): usually an operator certificate. The CA
// is tls.ca_file unless ca_file is set. Without it the CLI uses the node's
// own certificate, which may read but not change the cluster.
type CtlConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Client is the TLS files the CLI uses with this config.
func (c *Config) Client() TLSConfig {
	if !c.TLS.Enabled() {
		return c.TLS
	}
	if c.Ctl.CertFile == "" {
		return c.TLS
	}
	ca := c.Ctl.CAFile
	if ca == "" {
		ca = c.TLS.CAFile
	}
	return TLSConfig{Mode: TLSModeOn, CAFile: ca, CertFile: c.Ctl.CertFile, KeyFile: c.Ctl.KeyFile}
}

// PostgresConfig is the local Postgres instance (data nodes only).
type PostgresConfig struct {
	BinDir          string `yaml:"bin_dir"`
	DataDir         string `yaml:"data_dir"`
	Host            string `yaml:"host"` // the address peers and clients use
	ListenAddresses string `yaml:"listen_addresses"`
	Port            int    `yaml:"port"`
	SocketDir       string `yaml:"socket_dir"`
	// OSUser runs every Postgres binary when the sidecar runs as root.
	OSUser          string `yaml:"os_user"`
	Superuser       string `yaml:"superuser"`
	ReplicationUser string `yaml:"replication_user"`
	// Files holding passwords (one line); never put a password in this file.
	SuperuserPasswordFile   string `yaml:"superuser_password_file"`
	ReplicationPasswordFile string `yaml:"replication_password_file"`
	// AuthMethod for TCP connections: scram-sha-256 (default) or trust
	// (trust is for a local lab only).
	AuthMethod string `yaml:"auth_method"`
	// AllowedNetworks get host/replication pg_hba entries (CIDR).
	AllowedNetworks []string          `yaml:"allowed_networks"`
	Parameters      map[string]string `yaml:"parameters"`
	HBA             []string          `yaml:"hba"`
	LogFile         string            `yaml:"log_file"`
	StartTimeout    Duration          `yaml:"start_timeout"`
	StopTimeout     Duration          `yaml:"stop_timeout"`
	// RestartTimeout is how long a crashed Postgres may take to restart in
	// place before the primary releases its lease (0: release at once).
	RestartTimeout Duration `yaml:"restart_timeout"`
	WALKeepSize    ByteSize `yaml:"wal_keep_size"`
	// MaxSlotWALKeepSize is max_slot_wal_keep_size: the most WAL a
	// replication slot may hold back (0: no cap). A slot past it loses its
	// WAL; its standby is marked needs re-clone (slot_retention's byte cap).
	MaxSlotWALKeepSize ByteSize `yaml:"max_slot_wal_keep_size"`
	// ManualRejoin: a former primary (or a diverged standby) waits for
	// `hasidecar node rejoin` instead of rewinding itself (repmgr's way).
	ManualRejoin bool `yaml:"manual_rejoin"`
	// DiskFullThreshold: free space on the data directory's (or pg_wal's)
	// filesystem below which the node reports its disk as full (event
	// disk_full, node check CRITICAL).
	DiskFullThreshold ByteSize `yaml:"disk_full_threshold"`
	// DisableLeaseGate: in asynchronous mode, run without the lease gate
	// (DESIGN.md, "Lease and fencing", point 3a): commits do not wait for
	// the guard's acknowledgement, and a primary frozen with its whole
	// host may acknowledge writes after it thaws. For measurements.
	DisableLeaseGate bool `yaml:"disable_lease_gate"`
	// StopOnExit: a graceful stop of the sidecar stops Postgres too (and
	// a primary releases its lease), and Postgres dies with the sidecar
	// (parent-death signal). False (the default): the sidecar leaves
	// Postgres running under its guard, which kills it at the lease
	// deadline unless the next sidecar adopts it first (DESIGN.md,
	// "Restarting the sidecar").
	StopOnExit bool `yaml:"stop_on_exit"`
}

// TimingConfig holds the intervals of the protocol.
type TimingConfig struct {
	MonitorInterval Duration `yaml:"monitor_interval"`
	Lease           Duration `yaml:"lease"`
	// DriftMarginPercent is added to the lease when the leader decides it
	// expired, to cover clock-rate drift between hosts.
	DriftMarginPercent int `yaml:"drift_margin_percent"`
}

// RenewalsPerLease: the primary renews its lease every lease/3. The
// leader fails over at the last renewal's apply + lease + drift margin, so
// a primary that dies at a random moment is declared dead lease + margin −
// U(0, lease/3) after its death. More frequent renewals would make that
// longer on average (the lease is fresher when the primary dies: lease/4
// measured 4.42 s median on the bench against 4.16 s), rarer ones leave
// fewer attempts before the fence margin when a renewal fails.
const RenewalsPerLease = 3

// RenewEvery is how often the primary renews its lease.
func (t TimingConfig) RenewEvery() time.Duration { return t.Lease.D() / RenewalsPerLease }

// EventsConfig caps the events table (cluster-wide).
type EventsConfig struct {
	MaxCount int      `yaml:"max_count"`
	MaxAge   Duration `yaml:"max_age"`
}

// MonitoringConfig: each sidecar samples itself every HistoryInterval into
// state_dir/history and keeps HistoryRetention of samples (cluster history
// reads them from every sidecar).
type MonitoringConfig struct {
	HistoryRetention Duration `yaml:"history_retention"`
	HistoryInterval  Duration `yaml:"history_interval"`
}

// Duration is a time.Duration written as "1s", "500ms", "2m" or "7d".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size in bytes written as 1048576, "16MB", "1GB" or "512kB".
type ByteSize uint64
