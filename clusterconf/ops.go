package clusterconf

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Diff is one key's change: old and new in text form ("" with Had/Has
// false: not set).
type Diff struct {
	Key      string
	Old, New string
	Had, Has bool
}

// String is how `config set`, the config_changed event and `config
// history` show a change: `key "old" → "new"` (unset for a key not set).
func (d Diff) String() string {
	return d.Key + " " + quoteOrUnset(d.Old, d.Had) + " → " + quoteOrUnset(d.New, d.Has)
}

func quoteOrUnset(v string, ok bool) string {
	if !ok {
		return "unset"
	}
	return strconv.Quote(v)
}

// Apply validates changes and applies them to a copy of s; the copy and the
// changes that altered a value come back (none: nothing changed). A bad key
// or value refuses the whole list with an error naming the key; so does a
// Postgres setting hasidecar manages (config.ManagedParameters), with the
// reason. s is not modified.
func Apply(s *pb.Settings, changes []*pb.ConfigChange) (*pb.Settings, []Diff, error) {
	next := &pb.Settings{}
	if s != nil {
		next = proto.Clone(s).(*pb.Settings)
	}
	if len(changes) == 0 {
		return nil, nil, errors.New("no change given; write KEY=VALUE")
	}
	seen := map[string]bool{}
	var diffs []Diff
	for _, c := range changes {
		if seen[c.Key] {
			return nil, nil, fmt.Errorf("%s: given twice; keep one", c.Key)
		}
		seen[c.Key] = true
		k, sub, err := Lookup(c.Key)
		if err != nil {
			return nil, nil, err
		}
		if k.Name == ParamPrefix {
			if why, ok := config.ManagedParameters[sub]; ok {
				return nil, nil, fmt.Errorf("%s: %s", c.Key, why) // what config.Validate says of postgres.parameters
			}
		}
		old, had := k.get(next, sub)
		if c.Unset {
			k.unset(next, sub)
		} else if err := k.set(next, sub, c.Value); err != nil {
			return nil, nil, fmt.Errorf("%s: %v", c.Key, err)
		}
		nv, has := k.get(next, sub)
		if !k.Family() {
			// A parameter is set or not; a fixed key always has a value,
			// its default when the settings carry none.
			if !had {
				old = k.Default
			}
			if !has {
				nv = k.Default
			}
			had, has = true, true
		}
		if old != nv || had != has {
			diffs = append(diffs, Diff{Key: c.Key, Old: old, New: nv, Had: had, Has: has})
		}
	}
	return next, diffs, nil
}

// Details is the config_changed event's text: the version the change made
// and each key's change, "; " between.
func Details(version uint64, diffs []Diff) string {
	parts := make([]string, len(diffs))
	for i, d := range diffs {
		parts[i] = d.String()
	}
	return fmt.Sprintf("version %d: %s", version, strings.Join(parts, "; "))
}

// ParseDetails reads Details back (config history).
func ParseDetails(s string) (uint64, []Diff, error) {
	var version uint64
	head, rest, ok := strings.Cut(s, ": ")
	if !ok {
		return 0, nil, fmt.Errorf("not a config_changed text: %q", s)
	}
	if _, err := fmt.Sscanf(head, "version %d", &version); err != nil {
		return 0, nil, fmt.Errorf("not a config_changed text: %q", s)
	}
	var diffs []Diff
	for rest != "" {
		key, after, ok := strings.Cut(rest, " ")
		if !ok {
			return 0, nil, fmt.Errorf("config_changed text: no value after %q", key)
		}
		d := Diff{Key: key}
		var err error
		if d.Old, d.Had, after, err = readValue(after); err != nil {
			return 0, nil, err
		}
		after, ok = strings.CutPrefix(after, " → ")
		if !ok {
			return 0, nil, fmt.Errorf("config_changed text: no arrow after %s", key)
		}
		if d.New, d.Has, after, err = readValue(after); err != nil {
			return 0, nil, err
		}
		diffs = append(diffs, d)
		rest, _ = strings.CutPrefix(after, "; ")
		if rest == after && after != "" {
			return 0, nil, fmt.Errorf("config_changed text: unexpected %q", after)
		}
	}
	return version, diffs, nil
}

func readValue(s string) (v string, ok bool, rest string, err error) {
	if r, found := strings.CutPrefix(s, "unset"); found {
		return "", false, r, nil
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", false, "", fmt.Errorf("config_changed text: bad value at %q", s)
	}
	v, _ = strconv.Unquote(q)
	return v, true, s[len(q):], nil
}

// Entry is one line of `config show`.
type Entry struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Default string `json:"default"`
	Set     bool   `json:"set"` // false: the default applies
	Applies string `json:"applies"`
	Doc     string `json:"doc"`
}

// Entries lists every key with its value in s: the fixed keys in table
// order, then each Postgres parameter by name.
func Entries(s *pb.Settings) []Entry {
	var out []Entry
	for _, k := range Keys {
		if k.Family() {
			for _, name := range slices.Sorted(maps.Keys(s.GetPostgresParameters())) {
				v, _ := k.get(s, name)
				out = append(out, Entry{Key: k.Name + name, Value: v, Set: true, Applies: k.Applies, Doc: k.Doc})
			}
			continue
		}
		v, set := k.get(s, "")
		if !set {
			v = k.Default
		}
		out = append(out, Entry{Key: k.Name, Value: v, Default: k.Default, Set: set, Applies: k.Applies, Doc: k.Doc})
	}
	return out
}

// Values is the configuration as key → text form, for `config edit`: every
// fixed key and each Postgres parameter.
func Values(s *pb.Settings) map[string]string {
	m := map[string]string{}
	for _, e := range Entries(s) {
		m[e.Key] = e.Value
	}
	return m
}

// Changes turns an edited key → value map into the changes from s: keys
// whose text differs, and parameters removed (unset).
func Changes(s *pb.Settings, edited map[string]string) []*pb.ConfigChange {
	cur := Values(s)
	var out []*pb.ConfigChange
	for _, k := range slices.Sorted(maps.Keys(edited)) {
		if v, ok := cur[k]; !ok || v != edited[k] {
			out = append(out, &pb.ConfigChange{Key: k, Value: edited[k]})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if _, ok := edited[k]; !ok && strings.HasPrefix(k, ParamPrefix) {
			out = append(out, &pb.ConfigChange{Key: k, Unset: true})
		}
	}
	return out
}

// Drift lists the cluster-wide keys the node file gives (given: the file's
// key paths, config.GivenKeys) with another value than s holds: the
// replicated value applies.
func Drift(c *config.Config, given map[string]bool, s *pb.Settings) []*pb.ConfigDrift {
	var out []*pb.ConfigDrift
	for _, k := range Keys {
		if k.YAML == "" || k.local == nil || !given[k.YAML] {
			continue
		}
		cluster, set := k.get(s, "")
		if !set {
			cluster = k.Default
		}
		if local := k.local(c); local != cluster {
			out = append(out, &pb.ConfigDrift{Key: k.Name, YamlKey: k.YAML, Local: local, Cluster: cluster})
		}
	}
	return out
}
