// Package clusterconf is the runtime cluster configuration: the one table
// of every cluster-wide key (Keys), how each is parsed, validated, rendered
// and stored in the replicated Settings, and the pure operations on it that
// the FSM (Apply), the leader (validation before commit), `config show`,
// the README reference and the node-YAML drift check share.
//
// It is pure: no I/O, no clock. Adding a key is one row of Keys.
package clusterconf

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// When a change takes effect (Key.Applies).
const (
	AppliesLive    = "live"           // the next decision that reads it
	AppliesRenewal = "next renewal"   // the primary's next lease renewal
	AppliesReload  = "reload"         // every data node rewrites its config and reloads Postgres
	AppliesGUC     = "reload/restart" // as Postgres says: pending_restart when it needs a restart
)

// Key is one row of the table.
type Key struct {
	// Name is the dotted key ("timing.lease"); a family of keys ends in
	// "." and takes a sub-name ("postgresql.parameters." + "work_mem").
	Name    string
	Type    string // for people: "auto | manual", "duration", "size", ...
	Default string // the value of a cluster created without it, in text form
	Applies string // one of the Applies* constants
	Doc     string // one line for `config show` and the README
	// YAML is the node-file key that bootstrapped it ("" none): a node whose
	// file gives another value gets a drift warning.
	YAML string

	get   func(s *pb.Settings, sub string) (string, bool) // text form; false: not set
	set   func(s *pb.Settings, sub, v string) error       // parse, validate, store
	unset func(s *pb.Settings, sub string)
	local func(c *config.Config) string // the node file's value, in text form
}

// Family reports whether the row is a family of keys (NAME.).
func (k *Key) Family() bool { return strings.HasSuffix(k.Name, ".") }

// Keys is the table: every cluster-wide key, in the order `config show`
// lists them.
var Keys = []*Key{
	{
		Name: "failover", Type: "auto | manual", Default: "auto", Applies: AppliesLive, YAML: "failover",
		Doc: "auto: the leader promotes a standby when the primary's lease expires; manual: it records failover_pending and waits for `hasidecar failover --to`",
		get: func(s *pb.Settings, _ string) (string, bool) {
			if s.FailoverMode == pb.FailoverMode_FAILOVER_MODE_MANUAL {
				return "manual", true
			}
			return "auto", s.FailoverMode != pb.FailoverMode_FAILOVER_MODE_UNSPECIFIED
		},
		set: func(s *pb.Settings, _, v string) error {
			switch v {
			case "auto", config.FailoverAutomatic:
				s.FailoverMode = pb.FailoverMode_FAILOVER_MODE_AUTOMATIC
			case config.FailoverManual:
				s.FailoverMode = pb.FailoverMode_FAILOVER_MODE_MANUAL
			default:
				return fmt.Errorf("%q is not a failover mode; use auto or manual", v)
			}
			return nil
		},
		unset: func(s *pb.Settings, _ string) { s.FailoverMode = pb.FailoverMode_FAILOVER_MODE_AUTOMATIC },
		local: func(c *config.Config) string {
			if c.Failover == config.FailoverManual {
				return "manual"
			}
			return "auto"
		},
	},
	{
		Name: "synchronous", Type: "off | on | strict", Default: "off", Applies: AppliesLive, YAML: "synchronous",
		Doc: "on: every commit waits for synchronous_count standbys of the committed synchronous set, and only a member is promoted; the set narrows to the standbys that stream (asynchronous when none does, a synchronous_degraded event); strict: never narrowed below synchronous_count, commits wait instead",
		get: func(s *pb.Settings, _ string) (string, bool) { return SyncModeText(s), s.Synchronous },
		set: func(s *pb.Settings, _, v string) error {
			switch v {
			case SyncOff, SyncOn, SyncStrict:
				s.Synchronous, s.SynchronousStrict = v != SyncOff, v == SyncStrict
				return nil
			}
			return fmt.Errorf("%q is not a synchronous mode; use off, on or strict", v)
		},
		unset: func(s *pb.Settings, _ string) { s.Synchronous, s.SynchronousStrict = false, false },
		local: func(c *config.Config) string { return onOff(c.Synchronous) },
	},
	{
		Name: "synchronous_count", Type: "integer", Default: "1", Applies: AppliesLive,
		Doc: "k: in synchronous mode the primary runs synchronous_standby_names = 'ANY k (…)' over the committed set, and a failover needs answers from n − k + 1 of its n members; at most the data nodes minus one",
		get: func(s *pb.Settings, _ string) (string, bool) {
			return fmt.Sprint(SyncCount(s)), s.SynchronousCount != 0
		},
		set: func(s *pb.Settings, _, v string) error {
			var n int32
			if _, err := fmt.Sscan(v, &n); err != nil || fmt.Sprint(n) != v {
				return fmt.Errorf("%q is not a whole number; use 1 or more", v)
			}
			if n < 1 || n > MaxSyncCount {
				return fmt.Errorf("%d is out of range; use 1 to %d (and at most the data nodes minus one)", n, MaxSyncCount)
			}
			s.SynchronousCount = n
			return nil
		},
		unset: func(s *pb.Settings, _ string) { s.SynchronousCount = 0 },
	},
	{
		Name: "maximum_lag_on_failover", Type: "size", Default: config.DefaultMaximumLagOnFailover.String(), Applies: AppliesLive, YAML: "maximum_lag_on_failover",
		Doc: "in asynchronous mode a standby further behind the primary's last known position is not promoted",
		get: func(s *pb.Settings, _ string) (string, bool) {
			return config.ByteSize(s.MaximumLagOnFailover).String(), s.MaximumLagOnFailover != 0
		},
		set: func(s *pb.Settings, _, v string) error {
			n, err := parseSize(v)
			if err == nil && n == 0 {
				err = fmt.Errorf("0 is too small; use at least 1B (default %s)", config.DefaultMaximumLagOnFailover)
			}
			s.MaximumLagOnFailover = n
			return err
		},
		unset: func(s *pb.Settings, _ string) { s.MaximumLagOnFailover = uint64(config.DefaultMaximumLagOnFailover) },
		local: func(c *config.Config) string { return c.MaximumLagOnFailover.String() },
	},
	{
		Name: "timing.lease", Type: "duration", Default: config.DefaultLease.String(), Applies: AppliesRenewal, YAML: "timing.lease",
		Doc: "how long a renewal keeps the primary's lease; a change applies from the primary's next renewal, whose own length the leader's expiry check uses",
		get: func(s *pb.Settings, _ string) (string, bool) { return msText(s.LeaseMs), s.LeaseMs != 0 },
		set: func(s *pb.Settings, _, v string) error {
			return setDuration(&s.LeaseMs, v, time.Second, 2*time.Minute, false)
		},
		unset: func(s *pb.Settings, _ string) { s.LeaseMs = config.DefaultLease.D().Milliseconds() },
		local: func(c *config.Config) string { return c.Timing.Lease.String() },
	},
	{
		Name: "events.max_count", Type: "integer", Default: fmt.Sprint(config.DefaultEventsMaxCount), Applies: AppliesLive, YAML: "events.max_count",
		Doc: "the events table keeps at most this many events, oldest dropped first",
		get: func(s *pb.Settings, _ string) (string, bool) {
			if s.EventMaxCount == 0 {
				return fmt.Sprint(config.DefaultEventsMaxCount), false
			}
			return fmt.Sprint(s.EventMaxCount), true
		},
		set: func(s *pb.Settings, _, v string) error {
			var n int64
			if _, err := fmt.Sscan(v, &n); err != nil || fmt.Sprint(n) != v {
				return fmt.Errorf("%q is not a whole number; use 10 to 1000000", v)
			}
			if n < 10 || n > 1000000 {
				return fmt.Errorf("%d is out of range; use 10 to 1000000", n)
			}
			s.EventMaxCount = n
			return nil
		},
		unset: func(s *pb.Settings, _ string) { s.EventMaxCount = config.DefaultEventsMaxCount },
		local: func(c *config.Config) string { return fmt.Sprint(c.Events.MaxCount) },
	},
	{
		Name: "events.max_age", Type: "duration", Default: config.DefaultEventsMaxAge.String(), Applies: AppliesLive, YAML: "events.max_age",
		Doc: "events older than this are dropped (0s: no age limit)",
		// 0 is "no age limit" in the settings, not "unset".
		get: func(s *pb.Settings, _ string) (string, bool) { return msText(s.EventMaxAgeMs), true },
		set: func(s *pb.Settings, _, v string) error {
			return setDuration(&s.EventMaxAgeMs, v, time.Minute, 87600*time.Hour, true)
		},
		unset: func(s *pb.Settings, _ string) { s.EventMaxAgeMs = config.DefaultEventsMaxAge.D().Milliseconds() },
		local: func(c *config.Config) string { return c.Events.MaxAge.String() },
	},
	{
		Name: "slot_retention", Type: "duration", Default: config.DefaultSlotRetention.String(), Applies: AppliesLive, YAML: "slot_retention",
		Doc: "a standby's slot inactive this long is dropped and the standby re-clones when it returns (0s: never by time)",
		// 0 is "never by time" in the settings, not "unset".
		get: func(s *pb.Settings, _ string) (string, bool) { return msText(s.SlotRetentionMs), true },
		set: func(s *pb.Settings, _, v string) error {
			return setDuration(&s.SlotRetentionMs, v, 5*time.Second, 30*24*time.Hour, true)
		},
		unset: func(s *pb.Settings, _ string) { s.SlotRetentionMs = config.DefaultSlotRetention.D().Milliseconds() },
		local: func(c *config.Config) string { return c.SlotRetention.String() },
	},
	{
		Name: "failover_on_storage_failure", Type: "duration", Default: "0s", Applies: AppliesLive, YAML: "failover_on_storage_failure",
		Doc: "a primary whose disk has been full this long fences itself and releases its lease when a standby can take over (0s: off)",
		get: func(s *pb.Settings, _ string) (string, bool) {
			return msText(s.StorageFailureFailoverMs), s.StorageFailureFailoverMs != 0
		},
		set: func(s *pb.Settings, _, v string) error {
			return setDuration(&s.StorageFailureFailoverMs, v, 5*time.Second, 24*time.Hour, true)
		},
		unset: func(s *pb.Settings, _ string) { s.StorageFailureFailoverMs = 0 },
		local: func(c *config.Config) string { return c.FailoverOnStorageFailure.String() },
	},
	{
		Name: "raft.max_voters", Type: "odd integer", Default: fmt.Sprint(config.DefaultMaxVoters), Applies: AppliesLive, YAML: "raft.max_voters",
		Doc: "at most this many Raft voters; further members are non-voters. A lower cap applies to joins and replacements: voters above it stay until they die or are removed",
		get: func(s *pb.Settings, _ string) (string, bool) {
			if s.MaxVoters == 0 {
				return fmt.Sprint(config.DefaultMaxVoters), false
			}
			return fmt.Sprint(s.MaxVoters), true
		},
		set: func(s *pb.Settings, _, v string) error {
			var n int32
			if _, err := fmt.Sscan(v, &n); err != nil || fmt.Sprint(n) != v {
				return fmt.Errorf("%q is not a whole number; use an odd number like 3 or 5", v)
			}
			switch {
			case n < 1:
				return fmt.Errorf("%d is too small; use an odd number of at least 1: 3 or 5 (default %d) tolerate one or two lost voters", n, config.DefaultMaxVoters)
			case n > 99:
				return fmt.Errorf("%d is too large; use an odd number up to 99 (every commit waits for a majority of them)", n)
			case n%2 == 0:
				return fmt.Errorf("%d is even; use %d or %d: an even number of voters tolerates no more lost voters than one fewer, and needs one more for every commit", n, n-1, n+1)
			}
			s.MaxVoters = n
			return nil
		},
		unset: func(s *pb.Settings, _ string) { s.MaxVoters = config.DefaultMaxVoters },
		local: func(c *config.Config) string { return fmt.Sprint(c.Raft.MaxVoters) },
	},
	{
		Name: "raft.voter_replace_after", Type: "duration", Default: config.DefaultVoterReplaceAfter.String(), Applies: AppliesLive, YAML: "raft.voter_replace_after",
		Doc: "a voter whose reports have not reached the Raft leader this long is replaced by a healthy, caught-up non-voter",
		get: func(s *pb.Settings, _ string) (string, bool) {
			return msText(s.VoterReplaceAfterMs), s.VoterReplaceAfterMs != 0
		},
		set: func(s *pb.Settings, _, v string) error {
			return setDuration(&s.VoterReplaceAfterMs, v, 5*time.Second, 24*time.Hour, false)
		},
		unset: func(s *pb.Settings, _ string) {
			s.VoterReplaceAfterMs = config.DefaultVoterReplaceAfter.D().Milliseconds()
		},
		local: func(c *config.Config) string { return c.Raft.VoterReplaceAfter.String() },
	},
	{
		Name: "postgresql.parameters.", Type: "GUC value", Default: "", Applies: AppliesGUC,
		Doc: "a Postgres setting on every data node (a node's own postgres.parameters win); checked against the primary's pg_settings before commit",
		get: func(s *pb.Settings, sub string) (string, bool) {
			v, ok := s.PostgresParameters[sub]
			return v, ok
		},
		set: func(s *pb.Settings, sub, v string) error {
			if strings.ContainsAny(v, "\n\r\x00") {
				return fmt.Errorf("the value holds a line break; write it on one line")
			}
			if s.PostgresParameters == nil {
				s.PostgresParameters = map[string]string{}
			}
			s.PostgresParameters[sub] = v
			return nil
		},
		unset: func(s *pb.Settings, sub string) { delete(s.PostgresParameters, sub) },
	},
	{
		Name: "postgresql.hba", Type: "list of pg_hba.conf lines", Default: "[]", Applies: AppliesReload,
		Doc: `extra pg_hba.conf lines on every data node, after the node's own postgres.hba (set takes a JSON list: ["host all app 10.0.0.0/24 scram-sha-256"])`,
		get: func(s *pb.Settings, _ string) (string, bool) { return listText(s.PostgresHba), len(s.PostgresHba) > 0 },
		set: func(s *pb.Settings, _, v string) error {
			lines, err := parseHBA(v)
			s.PostgresHba = lines
			return err
		},
		unset: func(s *pb.Settings, _ string) { s.PostgresHba = nil },
	},
}

// ParamPrefix is the family of Postgres settings.
const ParamPrefix = "postgresql.parameters."

var gucNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`)

// Lookup finds the row of key and, for a family, the sub-name. The error
// names the key and says what to write.
func Lookup(key string) (*Key, string, error) {
	for _, k := range Keys {
		if !k.Family() {
			if k.Name == key {
				return k, "", nil
			}
			continue
		}
		if sub, ok := strings.CutPrefix(key, k.Name); ok {
			if !gucNameRE.MatchString(sub) {
				return nil, "", fmt.Errorf("%s: %q is not a Postgres parameter name; write it in lowercase letters, digits and '_', like work_mem", key, sub)
			}
			return k, sub, nil
		}
	}
	return nil, "", fmt.Errorf("%s: not a cluster configuration key%s; see `hasidecar config show` for the keys", key, suggest(key))
}

func suggest(key string) string {
	best, bestD := "", 4
	for _, k := range Keys {
		if k.Family() {
			continue
		}
		if d := config.EditDistance(key, k.Name); d < bestD {
			best, bestD = k.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// The values of the synchronous key.
const (
	SyncOff    = "off"
	SyncOn     = "on"
	SyncStrict = "strict"
)

// MaxSyncCount bounds synchronous_count before the cluster's own bound
// (the data nodes minus one, fsm.CheckSettings).
const MaxSyncCount = 64

// SyncModeText is the synchronous key's value: off, on or strict.
func SyncModeText(s *pb.Settings) string {
	switch {
	case !s.GetSynchronous():
		return SyncOff
	case s.GetSynchronousStrict():
		return SyncStrict
	}
	return SyncOn
}

// SyncCount is synchronous_count, k (1 when the settings carry none).
func SyncCount(s *pb.Settings) int {
	return max(int(s.GetSynchronousCount()), 1)
}

func parseSize(v string) (uint64, error) {
	n, err := config.ParseByteSize(v)
	if err != nil {
		return 0, err // names the value and the units
	}
	return n, nil
}

func msText(ms int64) string { return config.Duration(time.Duration(ms) * time.Millisecond).String() }

// setDuration parses v into *ms within [lo, hi] (or 0 when zeroOK).
func setDuration(ms *int64, v string, lo, hi time.Duration, zeroOK bool) error {
	d, err := config.ParseDuration(v)
	if err != nil {
		return err // names the value and how to write one
	}
	off := ""
	if zeroOK {
		off = " (or 0s for off)"
		if d == 0 {
			*ms = 0
			return nil
		}
	}
	if d < lo || d > hi {
		return fmt.Errorf("%s is out of range; use %s to %s%s", config.Duration(d), config.Duration(lo), config.Duration(hi), off)
	}
	if d%time.Millisecond != 0 {
		return fmt.Errorf("%s is finer than a millisecond; round it", config.Duration(d))
	}
	*ms = d.Milliseconds()
	return nil
}

func listText(lines []string) string {
	if lines == nil {
		lines = []string{}
	}
	b, _ := json.Marshal(lines)
	return string(b)
}

// pg_hba.conf's connection types and authentication methods (Postgres 15).
var (
	hbaTypes   = []string{"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
	hbaMethods = []string{"trust", "reject", "scram-sha-256", "md5", "password", "gss", "sspi", "ident", "peer", "ldap", "radius", "cert", "pam", "bsd"}
)

// parseHBA reads a JSON list of pg_hba.conf lines and checks each for shape:
// a connection type, database, user, an address unless local, a method.
func parseHBA(v string) ([]string, error) {
	var lines []string
	if err := json.Unmarshal([]byte(v), &lines); err != nil {
		return nil, fmt.Errorf("%q is not a JSON list of pg_hba.conf lines; write it like [\"host all app 10.0.0.0/24 scram-sha-256\"]", v)
	}
	for i, l := range lines {
		if err := checkHBALine(l); err != nil {
			return nil, fmt.Errorf("line %d %q: %v", i+1, l, err)
		}
	}
	if len(lines) == 0 {
		lines = nil
	}
	return lines, nil
}

func checkHBALine(l string) error {
	if strings.ContainsAny(l, "\n\r\x00") {
		return fmt.Errorf("holds a line break; give each line as its own list item")
	}
	f := strings.Fields(l)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return fmt.Errorf("empty; write a line like \"host all all 10.0.0.0/24 scram-sha-256\"")
	}
	if !slices.Contains(hbaTypes, f[0]) {
		return fmt.Errorf("%q is not a connection type; use %s", f[0], strings.Join(hbaTypes, ", "))
	}
	need := 5 // type database user address method
	if f[0] == "local" {
		need = 4
	}
	if len(f) < need {
		return fmt.Errorf("too few fields: a %s line is TYPE DATABASE USER%s METHOD [OPTIONS]", f[0], map[bool]string{true: "", false: " ADDRESS"}[f[0] == "local"])
	}
	method := f[need-1]
	if f[0] != "local" && !slices.Contains(hbaMethods, method) && len(f) > need && slices.Contains(hbaMethods, f[need]) {
		method = f[need] // ADDRESS NETMASK METHOD
	}
	if !slices.Contains(hbaMethods, method) {
		return fmt.Errorf("%q is not an authentication method; use one of %s", method, strings.Join(hbaMethods, ", "))
	}
	return nil
}
