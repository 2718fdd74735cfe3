package config

import (
	"errors"
	"strings"
	"testing"
)

const topKeys = "cluster, name, kind, state_dir, location, priority, tags, bootstrap, join, raft, grpc, http, tls, ctl, postgres, timing, events, monitoring, failover, synchronous, maximum_lag_on_failover, failover_on_storage_failure, slot_retention, event_command, event_command_timeout, log_level, log_json"

// tlsRequired is the text for a config with mutual TLS on (the default) and
// no certificate files; tlsIssue ends the one for mode off on an address
// other than loopback.
const (
	tlsRequired = "required: mutual TLS is on by default; make certificates with `hasidecar tls init --dir DIR --cluster NAME --node NAME=ADDRESS ...` and set tls.ca_file, tls.cert_file and tls.key_file, or set tls: {mode: off} on a loopback-only lab"
	tlsIssue    = "issue certificates with `hasidecar tls init` and set tls.ca_file, tls.cert_file and tls.key_file"
)

// errorCase is a malformed configuration and the error Parse must give.
// want is the whole error text when exact, else substrings it must hold;
// placeholders ($BIN, ...) are expanded in both.
type errorCase struct {
	name  string
	yaml  string
	exact bool
	want  []string
}

var errorCases = []errorCase{
	// Unknown keys.
	{
		name: "unknown top-level key", exact: true,
		yaml: witness("colour: blue\n"),
		want: []string{`config test.yaml: line 10: unknown key "colour" (valid top-level keys: ` + topKeys + `)`},
	},
	{
		name: "unknown top-level key close to a valid one", exact: true,
		yaml: witness("log_levl: debug\n"),
		want: []string{`config test.yaml: line 10: unknown key "log_levl" (did you mean "log_level"? valid top-level keys: ` + topKeys + `)`},
	},
	{
		name: "unknown nested key with did-you-mean", exact: true,
		yaml: witness("timing:\n  lease: 4s\n  monitr_interval: 1s\n"),
		want: []string{`config test.yaml: line 12: unknown key "timing.monitr_interval" (did you mean "monitor_interval"? valid keys in timing: monitor_interval, lease, drift_margin_percent)`},
	},
	{
		name: "misspelt raft.listen also leaves it missing", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\ngrpc:\n  listen: 10.0.0.9:7001\nraft:\n  lisen: 10.0.0.9:7000\n"),
		want: []string{
			`config test.yaml: line 9: unknown key "raft.lisen" (did you mean "listen"? valid keys in raft: listen, advertise, heartbeat_timeout, election_timeout, snapshot_threshold, snapshot_interval, max_voters, voter_replace_after)`,
			`config test.yaml: key "raft.listen": required: the host:port to listen on, like "0.0.0.0:7000"`,
		},
	},
	{
		name: "key in the wrong section", exact: true,
		yaml: witness("lease: 4s\n"),
		want: []string{`config test.yaml: line 10: unknown key "lease" (did you mean "timing.lease"? valid top-level keys: ` + topKeys + `)`},
	},
	{
		name: "unknown key in postgres",
		yaml: pg("data_directory: /x\n"),
		want: []string{`config test.yaml: line 14: unknown key "postgres.data_directory" (valid keys in postgres: bin_dir, data_dir, host,`},
	},

	// Wrong types.
	{
		name: "string for int", exact: true,
		yaml: witness("priority: high\n"),
		want: []string{`config test.yaml: line 10: key "priority": expected an integer, got "high"`},
	},
	{
		name: "float for int", exact: true,
		yaml: witness("priority: 1.5\n"),
		want: []string{`config test.yaml: line 10: key "priority": expected an integer, got "1.5"`},
	},
	{
		name: "quoted number for int", exact: true,
		yaml: witness("priority: \"10\"\n"),
		want: []string{`config test.yaml: line 10: key "priority": expected an integer, got "10"`},
	},
	{
		name: "huge int", exact: true,
		yaml: witness("priority: 99999999999999999999999\n"),
		want: []string{`config test.yaml: line 10: key "priority": expected an integer, got "99999999999999999999999"`},
	},
	{
		name: "list for string", exact: true,
		yaml: witness("location: [a, b]\n"),
		want: []string{`config test.yaml: line 10: key "location": expected a string, got a list`},
	},
	{
		name: "map for list", exact: true,
		yaml: witness("tags:\n  nofailover: true\n"),
		want: []string{`config test.yaml: line 11: key "tags": expected a list (one "- item" per line), got a mapping`},
	},
	{
		name: "string for list", exact: true,
		yaml: witness("tags: nofailover\n"),
		want: []string{`config test.yaml: line 10: key "tags": expected a list (one "- item" per line), got "nofailover"`},
	},
	{
		name: "map in a list of strings", exact: true,
		yaml: witness("tags:\n  - nofailover\n  - {a: b}\n"),
		want: []string{`config test.yaml: line 12: key "tags": expected a string in the list, got a mapping`},
	},
	{
		name: "string for section", exact: true,
		yaml: witness("timing: fast\n"),
		want: []string{`config test.yaml: line 10: key "timing": expected a mapping (the keys under timing), got "fast"`},
	},
	{
		name: "list for section", exact: true,
		yaml: withTLS("cluster: main\nname: pg-1\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.1:7000\ngrpc:\n  listen: 10.0.0.1:7001\npostgres:\n  - /data\n"),
		want: []string{`config test.yaml: line 10: key "postgres": expected a mapping (the keys under postgres), got a list`},
	},
	{
		name: "not a bool", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: maybe\njoin: [10.0.0.1:7001]\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 5: key "bootstrap": expected true or false, got "maybe"`},
	},
	{
		name: "duplicate section", exact: true,
		yaml: witness("raft:\n  snapshot_threshold: -1\n"),
		want: []string{`config test.yaml: line 10: key "raft": given twice (first at line 6); keep one`},
	},
	{
		name: "negative unsigned", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\n  snapshot_threshold: -1\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 8: key "raft.snapshot_threshold": expected a whole number (0 or more), got "-1"`},
	},
	{
		name: "parameter without value", exact: true,
		yaml: pg("parameters:\n  shared_buffers:\n"),
		want: []string{`config test.yaml: line 15: key "postgres.parameters.shared_buffers": has no value; give one or remove the key`},
	},
	{
		name: "parameter value is a list", exact: true,
		yaml: pg("parameters:\n  shared_preload_libraries: [a, b]\n"),
		want: []string{`config test.yaml: line 15: key "postgres.parameters.shared_preload_libraries": expected a string or number, got a list`},
	},

	// Durations.
	{
		name: "duration without unit", exact: true,
		yaml: witness("timing:\n  lease: 4\n"),
		want: []string{`config test.yaml: line 11: key "timing.lease": "4" is not a duration; write it with a unit, like "4s" or "500ms"`},
	},
	{
		name: "duration is a word", exact: true,
		yaml: witness("timing:\n  lease: fast\n"),
		want: []string{`config test.yaml: line 11: key "timing.lease": "fast" is not a duration; write it with a unit, like "4s" or "500ms"`},
	},
	{
		name: "negative duration", exact: true,
		yaml: witness("timing:\n  lease: -1s\n"),
		want: []string{`config test.yaml: line 11: key "timing.lease": "-1s" is negative; write a duration of 0 or more, like "4s" or "500ms"`},
	},
	{
		name: "duration is a list", exact: true,
		yaml: witness("event_command_timeout: [1s]\n"),
		want: []string{`config test.yaml: line 10: key "event_command_timeout": expected a duration such as "4s", got a list`},
	},
	{
		name: "lease too short", exact: true,
		yaml: witness("timing:\n  lease: 500ms\n"),
		want: []string{`config test.yaml: line 11: key "timing.lease": 500ms is out of range; use a value from 1s to 2m`},
	},
	{
		name: "max_voters even", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\n  max_voters: 4\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 8: key "raft.max_voters": 4 is even; use 3 or 5: an even number of voters tolerates no more lost voters than one fewer, and needs one more for every commit`},
	},
	{
		name: "max_voters zero", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\n  max_voters: 0\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 8: key "raft.max_voters": 0 is too small; use an odd number of at least 1: 3 or 5 (default 5) tolerate one or two lost voters`},
	},
	{
		name: "voter_replace_after too short", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\n  voter_replace_after: 1s\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 8: key "raft.voter_replace_after": 1s is out of range; use a value from 5s to 24h`},
	},
	{
		name: "heartbeat too long", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\n  heartbeat_timeout: 2m\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 8: key "raft.heartbeat_timeout": 2m is out of range; use a value from 100ms to 1m`},
	},
	{
		name: "explicit zero duration", exact: true,
		yaml: witness("event_command_timeout: 0s\n"),
		want: []string{`config test.yaml: line 10: key "event_command_timeout": 0s is out of range; use a value from 1s to 10m`},
	},
	{
		name: "lease shorter than two monitor intervals", exact: true,
		yaml: witness("timing:\n  monitor_interval: 3s\n  lease: 4s\n"),
		want: []string{`config test.yaml: line 12: key "timing.lease": 4s is shorter than 2 × timing.monitor_interval (6s); raise timing.lease or lower timing.monitor_interval`},
	},
	{
		name: "max_age below a minute", exact: true,
		yaml: witness("events:\n  max_age: 30s\n"),
		want: []string{`config test.yaml: line 11: key "events.max_age": 30s is out of range; use a value from 1m to 87600h (or 0s for no age limit)`},
	},
	{
		name: "failover_on_storage_failure too short", exact: true,
		yaml: witness("failover_on_storage_failure: 2s\n"),
		want: []string{`config test.yaml: line 10: key "failover_on_storage_failure": 2s is out of range; use a value from 5s to 24h (or 0s for off)`},
	},
	{
		name: "failover_on_storage_failure too long", exact: true,
		yaml: witness("failover_on_storage_failure: 48h\n"),
		want: []string{`config test.yaml: line 10: key "failover_on_storage_failure": 48h is out of range; use a value from 5s to 24h (or 0s for off)`},
	},
	{
		name: "restart_timeout too long", exact: true,
		yaml: pg("restart_timeout: 1h\n"),
		want: []string{`config test.yaml: line 14: key "postgres.restart_timeout": 1h is out of range; use a value from 0s to 10m (0s: release the lease at once)`},
	},

	// Sizes.
	{
		name: "size with an IEC unit", exact: true,
		yaml: witness("maximum_lag_on_failover: 16MiB\n"),
		want: []string{`config test.yaml: line 10: key "maximum_lag_on_failover": "16MiB" is not a size; write a whole number with a unit B, kB, MB, GB or TB, like "16MB"`},
	},
	{
		name: "fractional size", exact: true,
		yaml: witness("maximum_lag_on_failover: 1.5GB\n"),
		want: []string{`config test.yaml: line 10: key "maximum_lag_on_failover": "1.5GB" is not a size; write a whole number with a unit B, kB, MB, GB or TB, like "16MB"`},
	},
	{
		name: "negative size", exact: true,
		yaml: witness("maximum_lag_on_failover: -1\n"),
		want: []string{`config test.yaml: line 10: key "maximum_lag_on_failover": "-1" is not a size; write a whole number with a unit B, kB, MB, GB or TB, like "16MB"`},
	},
	{
		name: "size too large", exact: true,
		yaml: witness("maximum_lag_on_failover: 99999999TB\n"),
		want: []string{`config test.yaml: line 10: key "maximum_lag_on_failover": "99999999TB" is too large; use at most 8388607TB`},
	},
	{
		name: "zero size", exact: true,
		yaml: pg("wal_keep_size: 0\n"),
		want: []string{`config test.yaml: line 14: key "postgres.wal_keep_size": 0 is too small; use at least 1B (default 1GB)`},
	},
	{
		name: "disk_full_threshold below 1MB", exact: true,
		yaml: pg("disk_full_threshold: 512kB\n"),
		want: []string{`config test.yaml: line 14: key "postgres.disk_full_threshold": 512kB is too small; use at least 1MB (default 64MB)`},
	},
	{
		name: "disk_full_threshold not a size", exact: true,
		yaml: pg("disk_full_threshold: lots\n"),
		want: []string{`config test.yaml: line 14: key "postgres.disk_full_threshold": "lots" is not a size; write a whole number with a unit B, kB, MB, GB or TB, like "16MB"`},
	},

	// The file as a whole.
	{
		name: "empty file", exact: true,
		yaml: "",
		want: []string{`config test.yaml: the file is empty; write the configuration in YAML (see deploy/ for an example)`},
	},
	{
		name: "whitespace-only file", exact: true,
		yaml: "  \n\n   \n",
		want: []string{`config test.yaml: the file is empty; write the configuration in YAML (see deploy/ for an example)`},
	},
	{
		name: "comments only", exact: true,
		yaml: "# nothing yet\n\n# still nothing\n",
		want: []string{`config test.yaml: the file is empty; write the configuration in YAML (see deploy/ for an example)`},
	},
	{
		name: "null document", exact: true,
		yaml: "---\n~\n",
		want: []string{`config test.yaml: the file holds no settings; write the configuration in YAML (see deploy/ for an example)`},
	},
	{
		name: "binary junk", exact: true,
		yaml: "\x00\x01\xff\xfe",
		want: []string{`config test.yaml: line 1: the file holds the control character U+0000, which YAML does not allow; is this the right file?`},
	},
	{
		name: "invalid UTF-8", exact: true,
		yaml: "cluster: main\nname: \xff\xfe\n",
		want: []string{`config test.yaml: line 2: the file is not UTF-8 text (byte 0xff); is this the right file?`},
	},
	{
		name: "tab indentation", exact: true,
		yaml: "cluster: main\nraft:\n\tlisten: 10.0.0.1:7000\n",
		want: []string{`config test.yaml: line 3: invalid YAML: found character that cannot start any token; indent with spaces: YAML does not allow tabs for indentation`},
	},
	{
		name: "unclosed quote", exact: true,
		yaml: "cluster: \"main\nname: pg-1\n",
		want: []string{`config test.yaml: line 3: invalid YAML: found unexpected end of stream; check for an unclosed quote or bracket, or a key at the wrong indentation`},
	},
	{
		name: "unclosed bracket", exact: true,
		yaml: "cluster: main\njoin: [a:1, b:2\nname: x\n",
		want: []string{`config test.yaml: line 1: invalid YAML: did not find expected ',' or ']'; check for an unclosed quote or bracket, or a key at the wrong indentation`},
	},
	{
		name: "bad indentation", exact: true,
		yaml: "cluster: main\nraft:\n  listen: a\n   advertise: b\n",
		want: []string{`config test.yaml: line 4: invalid YAML: mapping values are not allowed in this context; check the indentation, and quote values that contain ": "`},
	},
	{
		name: "mapping value on the first line", exact: true,
		yaml: "cluster: main: x\n",
		want: []string{`config test.yaml: line 1: invalid YAML: mapping values are not allowed in this context; check the indentation, and quote values that contain ": "`},
	},
	{
		name: "unknown anchor", exact: true,
		yaml: "cluster: main\nname: *node\n",
		want: []string{`config test.yaml: line 2: invalid YAML: unknown anchor 'node' referenced; define the anchor (&node) before the alias (*node) that uses it`},
	},
	{
		name: "tag on the whole document", exact: true,
		yaml: "--- !config\ncluster: main\n",
		want: []string{`config test.yaml: line 1: the YAML tag "!config" is not supported here; remove it`},
	},
	{
		name: "duplicate key", exact: true,
		yaml: witness("cluster: other\n"),
		want: []string{`config test.yaml: line 10: key "cluster": given twice (first at line 1); keep one`},
	},
	{
		name: "duplicate nested key", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\n  listen: 10.0.0.9:7002\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 8: key "raft.listen": given twice (first at line 7); keep one`},
	},
	{
		name: "top-level list", exact: true,
		yaml: "- cluster: main\n- name: pg-1\n",
		want: []string{`config test.yaml: line 1: the top level must be a mapping of keys (cluster: ..., name: ...), got a list`},
	},
	{
		name: "top-level scalar", exact: true,
		yaml: "hello\n",
		want: []string{`config test.yaml: line 1: the top level must be a mapping of keys (cluster: ..., name: ...), got "hello"`},
	},
	{
		name: "two documents", exact: true,
		yaml: witnessYAML + "---\ncluster: other\n",
		want: []string{`config test.yaml: line 10: a second YAML document starts here; keep the configuration in one document (remove the "---" line)`},
	},
	{
		name: "merge key", exact: true,
		yaml: witness("timing:\n  <<: {lease: 4s}\n"),
		want: []string{`config test.yaml: line 11: key "timing": YAML merge keys (<<) are not supported; write the keys out`},
	},
	{
		name: "custom tag", exact: true,
		yaml: witness("location: !zone a\n"),
		want: []string{`config test.yaml: line 10: key "location": the YAML tag "!zone" is not supported here; remove it`},
	},
	{
		name: "key that is a list", exact: true,
		yaml: witness("? [a, b]\n: c\n"),
		want: []string{`config test.yaml: line 10: a key must be a plain name, got a list; write keys as name: value`},
	},

	// Kinds of node.
	{
		name: "witness with postgres section", exact: true,
		yaml: witness("postgres:\n  data_dir: /data\n"),
		want: []string{`config test.yaml: line 10: key "postgres": a witness runs no Postgres: remove the postgres section or set kind: data`},
	},
	{
		name: "data node without postgres", exact: true,
		yaml: withTLS("cluster: main\nname: pg-1\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.1:7000\ngrpc:\n  listen: 10.0.0.1:7001\n"),
		want: []string{`config test.yaml: key "postgres": required for a data node: set postgres.data_dir at least`},
	},
	{
		name: "bad kind", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: arbiter\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{
			`config test.yaml: line 3: key "kind": "arbiter" is not a kind of node; use "data" or "witness"`,
			`config test.yaml: key "postgres": required for a data node: set postgres.data_dir at least`,
		},
	},

	// Addresses.
	{
		name: "listen without port", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: localhost\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 7: key "raft.listen": "localhost" has no port; write it like "10.0.0.1:7000"`},
	},
	{
		name: "port out of range", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 1.2.3.4:99999\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 7: key "raft.listen": "1.2.3.4:99999" has port "99999"; use a port from 1 to 65535`},
	},
	{
		name: "just a colon", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: \":\"\n"),
		want: []string{`config test.yaml: line 9: key "grpc.listen": ":" has no port; write it like "10.0.0.1:7000"`},
	},
	{
		name: "bad join entries", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\njoin:\n  - ~\n  - localhost\n  - :7001\n  - host name:7001\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{
			`config test.yaml: line 7: key "join": "localhost" has no port; write it like "10.0.0.1:7000"`,
			`config test.yaml: line 8: key "join": ":7001" has no host; write it like "10.0.0.1:7000"`,
			`config test.yaml: line 9: key "join": "host name:7001": "host name" is not a host name or IP address`,
		},
	},
	{
		name: "no bootstrap and no join", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: key "join": empty and bootstrap is false: set bootstrap: true on the first node, or list the gRPC addresses of existing members under join`},
	},
	{
		name: "wildcard listen needs advertise", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 0.0.0.0:7000\ngrpc:\n  listen: :7001\n  advertise: 0.0.0.0:7001\n"),
		want: []string{
			`config test.yaml: line 10: key "grpc.advertise": "0.0.0.0:7001" is not an address other nodes can reach; use this host's address, like "10.0.0.1:7001"`,
			`config test.yaml: key "raft.advertise": required because raft.listen "0.0.0.0:7000" listens on every address; set the host:port other nodes use to reach this one, like "10.0.0.1:7000"`,
		},
	},
	{
		name: "raft and grpc on one port", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 0.0.0.0:7000\n  advertise: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7000\nhttp:\n  listen: :7000\n"),
		want: []string{
			`config test.yaml: line 10: key "grpc.listen": "10.0.0.9:7000" clashes with raft.listen "0.0.0.0:7000"; give Raft and gRPC different ports`,
			`config test.yaml: line 12: key "http.listen": ":7000" clashes with raft.listen; give it a port of its own (or "" to turn HTTP off)`,
			`config test.yaml: line 12: key "http.listen": ":7000" clashes with grpc.listen; give it a port of its own (or "" to turn HTTP off)`,
		},
	},

	// Paths and names.
	{
		name: "relative state_dir", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 4: key "state_dir": "var/lib/hasidecar" is not an absolute path; write the full path, starting with /`},
	},
	{
		name: "relative data_dir", exact: true,
		yaml: withTLS("cluster: main\nname: pg-1\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.1:7000\ngrpc:\n  listen: 10.0.0.1:7001\npostgres:\n  bin_dir: $BIN\n  data_dir: data\n  auth_method: trust\n"),
		want: []string{`config test.yaml: line 11: key "postgres.data_dir": "data" is not an absolute path; write the full path, starting with /`},
	},
	{
		name: "missing required keys", exact: true,
		yaml: "kind: witness\nbootstrap: true\n",
		want: []string{
			`config test.yaml: key "cluster": required: the cluster's name, the same on every node`,
			`config test.yaml: key "name": required: this node's name, unique in the cluster`,
			`config test.yaml: key "state_dir": required: an absolute directory for the Raft log and the sidecar's own files, like /var/lib/hasidecar`,
			`config test.yaml: key "raft.listen": required: the host:port to listen on, like "0.0.0.0:7000"`,
			`config test.yaml: key "grpc.listen": required: the host:port to listen on, like "0.0.0.0:7001"`,
			`config test.yaml: key "tls": ` + tlsRequired,
		},
	},
	{
		name: "bad names", exact: true,
		yaml: withTLS("cluster: Main\nname: pg 1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{
			`config test.yaml: line 1: key "cluster": "Main" is not a valid name; use 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit`,
			`config test.yaml: line 2: key "name": "pg 1" is not a valid name; use 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit`,
		},
	},
	{
		name: "name too long for a slot name", exact: true,
		yaml: withTLS("cluster: main\nname: " + strings.Repeat("n", 54) + "\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.9:7000\ngrpc:\n  listen: 10.0.0.9:7001\n"),
		want: []string{`config test.yaml: line 2: key "name": "` + strings.Repeat("n", 54) + `" is too long for the replication slot name "hasidecar_` + strings.Repeat("n", 54) + `"; use at most 53 characters`},
	},
	{
		name: "bad tag", exact: true,
		yaml: witness("tags: [nofailover, nofailvoer, fast]\n"),
		want: []string{
			`config test.yaml: line 10: key "tags": "nofailvoer" is not a tag (did you mean "nofailover"?); use nofailover, noloadbalance or nosync`,
			`config test.yaml: line 10: key "tags": "fast" is not a tag; use nofailover, noloadbalance or nosync`,
		},
	},
	{
		name: "priority out of range", exact: true,
		yaml: witness("priority: 1001\n"),
		want: []string{`config test.yaml: line 10: key "priority": 1001 is out of range; use 0 (never promote) to 1000`},
	},
	{
		name: "bad enumerations", exact: true,
		yaml: witness("failover: auto\nlog_level: verbose\n"),
		want: []string{
			`config test.yaml: line 10: key "failover": "auto" is not a failover mode; use "automatic" or "manual"`,
			`config test.yaml: line 11: key "log_level": "verbose" is not a log level; use trace, debug, info, warn or error`,
		},
	},
	{
		name: "events out of range", exact: true,
		yaml: witness("events:\n  max_count: 5\n"),
		want: []string{`config test.yaml: line 11: key "events.max_count": 5 is out of range; use 10 to 1000000`},
	},

	// TLS: on unless mode is off, which loopback addresses alone may use.
	{
		name: "no tls section", exact: true,
		yaml: bare(""),
		want: []string{`config test.yaml: key "tls": ` + tlsRequired},
	},
	{
		name: "TLS partial", exact: true,
		yaml: bare("tls:\n  ca_file: $CA\n"),
		want: []string{`config test.yaml: line 10: key "tls": tls.cert_file and tls.key_file not set; set all three of tls.ca_file, tls.cert_file and tls.key_file`},
	},
	{
		name: "TLS without a CA", exact: true,
		yaml: bare("tls:\n  cert_file: $CERT\n  key_file: $KEY\n"),
		want: []string{`config test.yaml: line 10: key "tls": tls.ca_file not set; set all three of tls.ca_file, tls.cert_file and tls.key_file`},
	},
	{
		name: "TLS mode on without files", exact: true,
		yaml: bare("tls:\n  mode: on\n"),
		want: []string{`config test.yaml: line 10: key "tls": ` + tlsRequired},
	},
	{
		name: "TLS file missing", exact: true,
		yaml: bare("tls:\n  ca_file: $CA\n  cert_file: $MISSING\n  key_file: $DIR\n"),
		want: []string{
			`config test.yaml: line 12: key "tls.cert_file": "$MISSING" does not exist; create it or fix the path`,
			`config test.yaml: line 13: key "tls.key_file": "$DIR" is a directory; give the path of a file`,
		},
	},
	{
		name: "key file readable by others", exact: true,
		yaml: bare("tls:\n  ca_file: $CA\n  cert_file: $CERT\n  key_file: $OPENKEY\n"),
		want: []string{`config test.yaml: line 13: key "tls.key_file": key file $OPENKEY is readable by others (mode 0644); chmod 600 it`},
	},
	{
		name: "TLS mode not on or off", exact: true,
		yaml: bare("tls:\n  mode: maybe\n"),
		want: []string{`config test.yaml: line 11: key "tls.mode": "maybe" is not a TLS mode; use "on" (the default) or "off" (loopback only)`},
	},
	{
		name: "TLS off on a wildcard address", exact: true,
		yaml: "cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 0.0.0.0:7000\n  advertise: 127.0.0.1:7000\ngrpc:\n  listen: 127.0.0.1:7001\ntls:\n  mode: off\n",
		want: []string{"config test.yaml: line 12: key \"tls.mode\": off is allowed only when every listen address is loopback, and raft.listen is \"0.0.0.0:7000\"; " + tlsIssue},
	},
	{
		name: "TLS off on a network address", exact: true,
		yaml: bare("tls: {mode: off}\n"),
		want: []string{
			"config test.yaml: line 10: key \"tls.mode\": off is allowed only when every listen address is loopback, and raft.listen is \"10.0.0.9:7000\"; " + tlsIssue,
			"config test.yaml: line 10: key \"tls.mode\": off is allowed only when every listen address is loopback, and grpc.listen is \"10.0.0.9:7001\"; " + tlsIssue,
		},
	},
	{
		name: "TLS off with a certificate file", exact: true,
		yaml: lab("tls:\n  mode: off\n  cert_file: $CERT\n"),
		want: []string{`config test.yaml: line 11: key "tls.mode": is off but certificate files are set; remove them, or remove mode: off to use them`},
	},
	{
		name: "ctl certificate without its key", exact: true,
		yaml: witness("ctl:\n  cert_file: $OPCERT\n"),
		want: []string{`config test.yaml: line 10: key "ctl": set both ctl.cert_file and ctl.key_file (the certificate the CLI uses), or neither`},
	},
	{
		name: "ctl CA alone", exact: true,
		yaml: witness("ctl:\n  ca_file: $CA\n"),
		want: []string{`config test.yaml: line 10: key "ctl": set both ctl.cert_file and ctl.key_file (the certificate the CLI uses), or neither`},
	},
	{
		name: "ctl files missing or readable by others", exact: true,
		yaml: witness("ctl:\n  ca_file: $MISSING\n  cert_file: $OPCERT\n  key_file: $OPENKEY\n"),
		want: []string{
			`config test.yaml: line 11: key "ctl.ca_file": "$MISSING" does not exist; create it or fix the path`,
			`config test.yaml: line 13: key "ctl.key_file": key file $OPENKEY is readable by others (mode 0644); chmod 600 it`,
		},
	},

	// Postgres.
	{
		name: "managed parameters", exact: true,
		yaml: pg("parameters:\n  port: 5433\n  wal_level: logical\n  unix_socket_directories: /tmp\n  Shared_Buffers: 1GB\n  restore_command: cp /a/%f %p\n"),
		want: []string{
			`config test.yaml: line 15: key "postgres.parameters.port": set postgres.port instead`,
			`config test.yaml: line 16: key "postgres.parameters.wal_level": managed by hasidecar; remove it`,
			`config test.yaml: line 17: key "postgres.parameters.unix_socket_directories": set postgres.socket_dir instead`,
			`config test.yaml: line 18: key "postgres.parameters.Shared_Buffers": not a Postgres parameter name; write it in lowercase letters, digits, '_' and '.', like shared_buffers`,
		},
	},
	{
		name: "bin dir missing executables", exact: true,
		yaml: withTLS("cluster: main\nname: pg-1\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.1:7000\ngrpc:\n  listen: 10.0.0.1:7001\npostgres:\n  bin_dir: $PARTBIN\n  data_dir: /data\n  auth_method: trust\n"),
		want: []string{`config test.yaml: line 10: key "postgres.bin_dir": "$PARTBIN" has no executable initdb, pg_basebackup, pg_rewind, pg_controldata; set postgres.bin_dir to the directory that holds the PostgreSQL 15 server binaries (Debian: install postgresql-15)`},
	},
	{
		name: "bin dir does not exist", exact: true,
		yaml: withTLS("cluster: main\nname: pg-1\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.1:7000\ngrpc:\n  listen: 10.0.0.1:7001\npostgres:\n  bin_dir: $MISSING\n  data_dir: /data\n  auth_method: trust\n"),
		want: []string{`config test.yaml: line 10: key "postgres.bin_dir": "$MISSING" does not exist; set postgres.bin_dir to the directory that holds the PostgreSQL 15 server binaries (Debian: install postgresql-15)`},
	},
	{
		name: "password files required", exact: true,
		yaml: withTLS("cluster: main\nname: pg-1\nstate_dir: /var/lib/hasidecar\nbootstrap: true\nraft:\n  listen: 10.0.0.1:7000\ngrpc:\n  listen: 10.0.0.1:7001\npostgres:\n  bin_dir: $BIN\n  data_dir: /data\n  replication_password_file: $MISSING\n"),
		want: []string{
			`config test.yaml: line 12: key "postgres.replication_password_file": "$MISSING" does not exist; create it or fix the path`,
			`config test.yaml: key "postgres.superuser_password_file": required when postgres.auth_method is scram-sha-256: the absolute path of a file holding the superuser's password on one line (or set postgres.auth_method: trust, for a local lab only)`,
		},
	},
	{
		name: "bad postgres values", exact: true,
		yaml: pg("port: 0\nauth_method: password\nos_user: Postgres\nallowed_networks: [10.0.0.0/33, 10.0.0.5/24, fe80::/10]\nhost: 0.0.0.0\nsocket_dir: run\n"),
		want: []string{
			`config test.yaml: line 14: key "postgres.port": 0 is out of range; use a port from 1 to 65535`,
			`config test.yaml: line 15: key "postgres.auth_method": "password" is not an authentication method; use scram-sha-256, md5 or trust`,
			`config test.yaml: line 16: key "postgres.os_user": "Postgres" is not a valid user name; use 1 to 63 lowercase letters, digits or '_', not starting with a digit`,
			`config test.yaml: line 17: key "postgres.allowed_networks": "10.0.0.0/33" is not a network in CIDR form; write it like "10.0.0.0/24" (or "10.0.0.5/32" for one host)`,
			`config test.yaml: line 17: key "postgres.allowed_networks": "10.0.0.5/24" has bits set after the prefix length; write "10.0.0.0/24" (or "10.0.0.5/32" for one host)`,
			`config test.yaml: line 18: key "postgres.host": "0.0.0.0" is not an address other nodes can reach; use this host's address (set postgres.listen_addresses to listen on every address)`,
			`config test.yaml: line 19: key "postgres.socket_dir": "run" is not an absolute path; write the full path, starting with /`,
		},
	},

	// Several problems at once: all reported, in line order.
	{
		name: "several problems", exact: true,
		yaml: withTLS("cluster: main\nname: w1\nkind: witness\nstate_dir: /var/lib/hasidecar\nbootstrap: true\npriority: high\nraft:\n  listen: 10.0.0.9:7000\n  snapshot_treshold: 10\ngrpc:\n  listen: 10.0.0.9:7001\ntiming:\n  lease: 4\nlog_level: loud\n"),
		want: []string{
			`config test.yaml: line 6: key "priority": expected an integer, got "high"`,
			`config test.yaml: line 9: unknown key "raft.snapshot_treshold" (did you mean "snapshot_threshold"? valid keys in raft: listen, advertise, heartbeat_timeout, election_timeout, snapshot_threshold, snapshot_interval, max_voters, voter_replace_after)`,
			`config test.yaml: line 13: key "timing.lease": "4" is not a duration; write it with a unit, like "4s" or "500ms"`,
			`config test.yaml: line 14: key "log_level": "loud" is not a log level; use trace, debug, info, warn or error`,
		},
	},
}

func TestParseErrors(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(fx.expand(tc.yaml)), "test.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded, want an error; got %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error is %T, want *config.Error", err)
			}
			got := err.Error()
			if tc.exact {
				want := fx.expand(strings.Join(tc.want, "\n"))
				if got != want {
					t.Errorf("error:\n%s\nwant:\n%s", got, want)
				}
				return
			}
			for _, w := range tc.want {
				if w = fx.expand(w); !strings.Contains(got, w) {
					t.Errorf("error:\n%s\ndoes not contain:\n%s", got, w)
				}
			}
		})
	}
}

// TestValidateBuiltInCode checks Validate on a Config built in code: no
// lines, every problem listed.
func TestValidateBuiltInCode(t *testing.T) {
	tests := []struct {
		name string
		cfg  func() *Config
		want string
	}{
		{
			name: "zero config after defaults",
			cfg: func() *Config {
				c := &Config{}
				c.ApplyDefaults()
				return c
			},
			want: `config: key "cluster": required: the cluster's name, the same on every node
config: key "name": required: this node's name, unique in the cluster
config: key "state_dir": required: an absolute directory for the Raft log and the sidecar's own files, like /var/lib/hasidecar
config: key "join": empty and bootstrap is false: set bootstrap: true on the first node, or list the gRPC addresses of existing members under join
config: key "raft.listen": required: the host:port to listen on, like "0.0.0.0:7000"
config: key "grpc.listen": required: the host:port to listen on, like "0.0.0.0:7001"
config: key "tls": ` + tlsRequired + `
config: key "postgres": required for a data node: set postgres.data_dir at least`,
		},
		{
			name: "zero config without defaults",
			cfg:  func() *Config { return &Config{} },
			want: `config: key "cluster": required: the cluster's name, the same on every node
config: key "name": required: this node's name, unique in the cluster
config: key "kind": "" is not a kind of node; use "data" or "witness"
config: key "state_dir": required: an absolute directory for the Raft log and the sidecar's own files, like /var/lib/hasidecar
config: key "location": is empty; give a label for this node's zone or data centre, or remove the key for "default"
config: key "join": empty and bootstrap is false: set bootstrap: true on the first node, or list the gRPC addresses of existing members under join
config: key "raft.listen": required: the host:port to listen on, like "0.0.0.0:7000"
config: key "grpc.listen": required: the host:port to listen on, like "0.0.0.0:7001"
config: key "raft.heartbeat_timeout": 0s is out of range; use a value from 100ms to 1m
config: key "raft.election_timeout": 0s is out of range; use a value from 100ms to 1m
config: key "raft.snapshot_threshold": 0 is too small; use at least 16 (default 1024)
config: key "raft.snapshot_interval": 0s is out of range; use a value from 1s to 24h
config: key "raft.max_voters": 0 is too small; use an odd number of at least 1: 3 or 5 (default 5) tolerate one or two lost voters
config: key "raft.voter_replace_after": 0s is out of range; use a value from 5s to 24h
config: key "tls.mode": "" is not a TLS mode; use "on" (the default) or "off" (loopback only)
config: key "postgres": required for a data node: set postgres.data_dir at least
config: key "timing.monitor_interval": 0s is out of range; use a value from 100ms to 1m
config: key "timing.lease": 0s is out of range; use a value from 1s to 2m
config: key "events.max_count": 0 is out of range; use 10 to 1000000
config: key "monitoring.history_interval": 0s is out of range; use a value from 1s to 1h
config: key "monitoring.history_retention": 0s is out of range; use a value from 1h to 87600h
config: key "failover": "" is not a failover mode; use "automatic" or "manual"
config: key "maximum_lag_on_failover": 0 is too small; use at least 1B (default 16MB)
config: key "event_command_timeout": 0s is out of range; use a value from 1s to 10m
config: key "log_level": "" is not a log level; use trace, debug, info, warn or error`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg().Validate()
			if err == nil {
				t.Fatal("Validate succeeded, want an error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
