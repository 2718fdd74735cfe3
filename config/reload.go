package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// liveKey is a node key that a running sidecar takes from its file again on
// SIGHUP (and `hasidecar reload`), and how to copy it.
type liveKey struct {
	key  string // dotted key path; a map or list key covers its items
	copy func(dst, src *Config)
}

// liveKeys is the one table of the node keys SIGHUP reloads. Every other
// key changed in the file keeps its running value until the sidecar
// restarts (Reload says which).
var liveKeys = []liveKey{
	{"log_level", func(d, s *Config) { d.LogLevel = s.LogLevel }},
	{"priority", func(d, s *Config) { d.Priority = s.Priority }},
	{"tags", func(d, s *Config) { d.Tags = slices.Clone(s.Tags) }},
	{"event_command", func(d, s *Config) { d.EventCommand = s.EventCommand }},
	{"event_command_timeout", func(d, s *Config) { d.EventCommandTimeout = s.EventCommandTimeout }},
	{"postgres.parameters", func(d, s *Config) {
		if d.Postgres != nil && s.Postgres != nil {
			d.Postgres.Parameters = cloneMap(s.Postgres.Parameters)
		}
	}},
	{"postgres.hba", func(d, s *Config) {
		if d.Postgres != nil && s.Postgres != nil {
			d.Postgres.HBA = slices.Clone(s.Postgres.HBA)
		}
	}},
}

// LiveKeys lists the node keys SIGHUP reloads, in the table's order.
func LiveKeys() []string {
	out := make([]string, len(liveKeys))
	for i, k := range liveKeys {
		out[i] = k.key
	}
	return out
}

// IsLiveKey reports whether a dotted key path (as Reload names it:
// "postgres.parameters.work_mem") is one SIGHUP reloads.
func IsLiveKey(key string) bool {
	for _, k := range liveKeys {
		if key == k.key || strings.HasPrefix(key, k.key+".") || strings.HasPrefix(key, k.key+"[") {
			return true
		}
	}
	return false
}

// ReloadPlan is what a reload of the node's file would do against the
// running configuration.
type ReloadPlan struct {
	// Next is the running configuration with the live keys taken from the
	// file: every other key keeps its running value.
	Next *Config
	// Live: the changed keys Next takes (dotted paths, sorted).
	Live []string
	// Restart: the changed keys that only a restart of the sidecar applies
	// (sorted); Next keeps their running values.
	Restart []string
}

// Changed reports whether the file differs from the running configuration.
func (p ReloadPlan) Changed() bool { return len(p.Live) > 0 || len(p.Restart) > 0 }

// PlanReload compares the running configuration with the file's (both
// parsed and validated) key by key. It changes neither.
func PlanReload(running, file *Config) ReloadPlan {
	next := running.clone()
	for _, k := range liveKeys {
		k.copy(next, file)
	}
	var p ReloadPlan
	p.Next = next
	a, b := Flatten(running), Flatten(file)
	for _, key := range unionKeys(a, b) {
		if a[key] == b[key] {
			continue
		}
		if IsLiveKey(key) && (running.Postgres != nil) == (file.Postgres != nil) {
			p.Live = append(p.Live, key)
		} else {
			p.Restart = append(p.Restart, key)
		}
	}
	return p
}

// clone is a copy deep enough that the live keys of the copy can be set
// without touching c (the sections are values; Postgres, maps and lists
// are copied).
func (c *Config) clone() *Config {
	cp := *c
	cp.Tags = slices.Clone(c.Tags)
	cp.Join = slices.Clone(c.Join)
	if c.Postgres != nil {
		pc := *c.Postgres
		pc.Parameters = cloneMap(c.Postgres.Parameters)
		pc.HBA = slices.Clone(c.Postgres.HBA)
		pc.AllowedNetworks = slices.Clone(c.Postgres.AllowedNetworks)
		cp.Postgres = &pc
	}
	return &cp
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Flatten maps every key path of c (by its YAML names) to its value in
// text form: a section's fields under "section.", a map's entries under
// "key.NAME", a list as one value. A nil section gives no keys.
func Flatten(c *Config) map[string]string {
	out := map[string]string{}
	flattenValue(reflect.ValueOf(c).Elem(), "", out)
	return out
}

func flattenValue(v reflect.Value, prefix string, out map[string]string) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := joinKey(prefix, name)
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		switch fv.Kind() {
		case reflect.Struct:
			flattenValue(fv, key, out)
		case reflect.Map:
			iter := fv.MapRange()
			for iter.Next() {
				out[key+"."+fmt.Sprint(iter.Key().Interface())] = fmt.Sprint(iter.Value().Interface())
			}
		default:
			out[key] = fmt.Sprint(fv.Interface())
		}
	}
}

func unionKeys(a, b map[string]string) []string {
	seen := make(map[string]bool, len(a)+len(b))
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
