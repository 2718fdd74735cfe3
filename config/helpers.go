package config

import (
	"bytes"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

const slotPrefix = "hasidecar_"

// RaftAdvertise returns the Raft address peers use: raft.advertise, or
// raft.listen when that is not set.
func (c *Config) RaftAdvertise() string {
	if c.Raft.Advertise != "" {
		return c.Raft.Advertise
	}
	return c.Raft.Listen
}

// GRPCAdvertise returns the gRPC address peers and clients use:
// grpc.advertise, or grpc.listen when that is not set.
func (c *Config) GRPCAdvertise() string {
	if c.GRPC.Advertise != "" {
		return c.GRPC.Advertise
	}
	return c.GRPC.Listen
}

// IsWitness reports whether the node is a witness (a Raft voter without
// Postgres).
func (c *Config) IsWitness() bool { return c.Kind == KindWitness }

// SlotName returns the name of this node's physical replication slot on the
// primary: "hasidecar_" + name with '-' replaced by '_'.
func (c *Config) SlotName() string {
	return slotPrefix + strings.ReplaceAll(c.Name, "-", "_")
}

// Conninfo returns a libpq key=value connection string to this Postgres as
// user, for the postgres database: "host=H port=P user=U dbname=postgres".
// It holds no password (the password files and .pgpass carry those).
func (p *PostgresConfig) Conninfo(user string) string {
	return conninfo(
		"host", p.Host,
		"port", strconv.Itoa(p.Port),
		"user", user,
		"dbname", "postgres",
	)
}

// PostgresConninfo returns the libpq connection string a standby uses to
// stream from this node when it is the primary:
// "host=H port=P user=<replication_user> application_name=<name>".
// It is "" for a node without Postgres.
func (c *Config) PostgresConninfo() string {
	p := c.Postgres
	if p == nil {
		return ""
	}
	return conninfo(
		"host", p.Host,
		"port", strconv.Itoa(p.Port),
		"user", p.ReplicationUser,
		"application_name", c.Name,
	)
}

// conninfo joins key, value pairs, quoting values as libpq requires.
func conninfo(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(quoteConninfo(kv[i+1]))
	}
	return b.String()
}

// quoteConninfo quotes a value for a libpq key=value string: empty values
// and values with spaces, quotes or backslashes go in single quotes, with '
// and \ escaped by a backslash.
func quoteConninfo(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\r\f\v'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// Marshal renders the config as YAML that Parse accepts (durations as "1s", sizes as "16MB"); used by the lab to write files.
//
// Keys with no value (a nil postgres section, empty lists and maps, empty
// strings) are left out; zero numbers and durations are written, so that an
// explicit "priority: 0" survives the round trip.
func (c *Config) Marshal() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, err
	}
	prune(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// prune removes mapping pairs whose value is null, an empty string, or an
// empty list or mapping (after pruning). Values under postgres.parameters
// are kept as they are: an empty setting means something there.
func prune(n *yaml.Node) {
	if n.Kind == yaml.DocumentNode || n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			prune(c)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value != "parameters" {
			prune(v)
		}
		empty := false
		switch v.Kind {
		case yaml.ScalarNode:
			empty = v.ShortTag() == "!!null" || (v.ShortTag() == "!!str" && v.Value == "")
		case yaml.SequenceNode, yaml.MappingNode:
			empty = len(v.Content) == 0
		}
		if !empty {
			kept = append(kept, k, v)
		}
	}
	n.Content = kept
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
