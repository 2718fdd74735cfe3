package pgctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Names of the files hasidecar manages inside the data directory.
const (
	ManagedConfFile  = "postgresql.hasidecar.conf"
	RecoveryConfFile = "postgresql.hasidecar.recovery.conf"
	managedHeader    = "# managed by hasidecar, do not edit: this file is rewritten whenever hasidecar applies its settings\n"
)

// ManagedSettings are the settings every replicated instance needs. Add or
// override entries (e.g. from postgres.parameters) before WriteManagedConfig.
func ManagedSettings(o Options) map[string]string {
	o = o.withDefaults()
	keepMB := (o.WALKeepSize + (1<<20 - 1)) >> 20
	return map[string]string{
		"port":                         strconv.Itoa(o.Port),
		"listen_addresses":             o.ListenAddresses,
		"unix_socket_directories":      o.SocketDir,
		"wal_level":                    "replica",
		"hot_standby":                  "on",
		"wal_log_hints":                "on",
		"max_wal_senders":              "10",
		"max_replication_slots":        "10",
		"wal_keep_size":                strconv.FormatUint(keepMB, 10) + "MB",
		"hot_standby_feedback":         "on",
		"wal_receiver_status_interval": "1s",
		"wal_sender_timeout":           "10s",
		"wal_receiver_timeout":         "10s",
		"wal_retrieve_retry_interval":  "1s",
		"recovery_target_timeline":     "latest",
		"logging_collector":            "off", // stderr goes to Options.LogFile
		"log_destination":              "stderr",
		"log_line_prefix":              "%m [%p] %q%u@%d ",
		"log_connections":              "off",
		"log_disconnections":           "off",
		"password_encryption":          "scram-sha-256",
	}
}

var settingNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// RenderConfig renders settings as a postgresql.conf fragment: the managed
// header, then `key = 'value'` lines in key order. Values are always quoted
// (Postgres accepts quoted numbers and booleans).
func RenderConfig(settings map[string]string) (string, error) {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		if !settingNameRE.MatchString(k) {
			return "", fmt.Errorf("invalid Postgres setting name %q", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(managedHeader)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, QuoteConfValue(settings[k]))
	}
	return b.String(), nil
}

// QuoteConfValue quotes a value for postgresql.conf: single quotes doubled,
// backslashes and control characters escaped.
func QuoteConfValue(v string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range v {
		switch r {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// WriteManagedConfig writes DataDir/postgresql.hasidecar.conf and makes sure
// postgresql.conf ends with the include lines for it and for the recovery
// file. Idempotent: changed is true only if a file's content changed. Run it
// again after pg_basebackup / pg_rewind, which copy these files from the
// source. Settings that need a restart are listed by PendingRestart after a
// Reload.
func (c *Controller) WriteManagedConfig(ctx context.Context, settings map[string]string) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	text, err := RenderConfig(settings)
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", ManagedConfFile, err)
	}
	ch1, err := c.writeDataFile(ManagedConfFile, []byte(text))
	if err != nil {
		return false, err
	}
	ch2, err := c.ensureIncludes()
	if err != nil {
		return false, err
	}
	// An empty recovery file, so Postgres does not log "skipping missing
	// configuration file"; SetRecovery fills it in.
	ch3 := false
	if _, err := os.Stat(filepath.Join(c.opts.DataDir, RecoveryConfFile)); errors.Is(err, fs.ErrNotExist) {
		if ch3, err = c.writeDataFile(RecoveryConfFile, []byte(renderRecovery("", ""))); err != nil {
			return false, err
		}
	}
	return ch1 || ch2 || ch3, nil
}

func renderRecovery(primaryConninfo, slotName string) string {
	return managedHeader +
		"primary_conninfo = " + QuoteConfValue(primaryConninfo) + "\n" +
		"primary_slot_name = " + QuoteConfValue(slotName) + "\n"
}

// SetRecovery writes primary_conninfo and primary_slot_name into
// DataDir/postgresql.hasidecar.recovery.conf (empty strings clear them) and
// ensures postgresql.conf includes it. Postgres 15 applies both on Reload.
// The same settings are removed from postgresql.auto.conf (ALTER SYSTEM),
// which would otherwise silently override them.
func (c *Controller) SetRecovery(ctx context.Context, primaryConninfo, slotName string) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if slotName != "" && !slotNameRE.MatchString(slotName) {
		return false, fmt.Errorf("setting recovery: invalid replication slot name %q (lower-case letters, digits and _; at most 63)", slotName)
	}
	ch1, err := c.writeDataFile(RecoveryConfFile, []byte(renderRecovery(primaryConninfo, slotName)))
	if err != nil {
		return false, err
	}
	ch2, err := c.ensureIncludes()
	if err != nil {
		return false, err
	}
	ch3, err := c.scrubAutoConf("primary_conninfo", "primary_slot_name")
	return ch1 || ch2 || ch3, err
}

var includeLineRE = regexp.MustCompile(`^\s*include(_if_exists)?\s*=?\s*'postgresql\.hasidecar(\.recovery)?\.conf'`)

// RenderIncludes returns postgresql.conf content with hasidecar's include
// lines removed wherever they are and appended once at the end.
func RenderIncludes(conf string) string {
	var keep []string
	for _, l := range strings.Split(conf, "\n") {
		if !includeLineRE.MatchString(l) {
			keep = append(keep, l)
		}
	}
	for len(keep) > 0 && strings.TrimSpace(keep[len(keep)-1]) == "" {
		keep = keep[:len(keep)-1]
	}
	out := strings.Join(keep, "\n")
	if out != "" {
		out += "\n\n"
	}
	return out + "include_if_exists = '" + ManagedConfFile + "'\n" +
		"include_if_exists = '" + RecoveryConfFile + "'\n"
}

func (c *Controller) ensureIncludes() (bool, error) {
	p := filepath.Join(c.opts.DataDir, "postgresql.conf")
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading postgresql.conf: %w", err)
	}
	return c.writeDataFile("postgresql.conf", []byte(RenderIncludes(string(old))))
}

// scrubAutoConf comments out the given settings in postgresql.auto.conf.
func (c *Controller) scrubAutoConf(names ...string) (bool, error) {
	p := filepath.Join(c.opts.DataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading postgresql.auto.conf: %w", err)
	}
	lines := strings.Split(string(old), "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		for _, n := range names {
			if strings.HasPrefix(t, n) && strings.HasPrefix(strings.TrimSpace(t[len(n):]), "=") {
				c.log.Warn("commenting out a setting in postgresql.auto.conf that would override hasidecar's", "setting", n)
				lines[i] = "# disabled by hasidecar (managed in " + RecoveryConfFile + "): " + n + " = ..."
			}
		}
	}
	return c.writeDataFile("postgresql.auto.conf", []byte(strings.Join(lines, "\n")))
}

// writeDataFile atomically replaces DataDir/name (0600, owned by the OS
// user) when its content differs.
func (c *Controller) writeDataFile(name string, data []byte) (bool, error) {
	p := filepath.Join(c.opts.DataDir, name)
	changed, err := c.writeFileIfChanged(p, data, 0o600)
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", p, err)
	}
	if changed {
		c.log.Debug("wrote config file", "file", p)
	}
	return changed, nil
}

func (c *Controller) writeFileIfChanged(p string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := writeFileAtomic(p, data, mode, c.chown); err != nil {
		return false, err
	}
	return true, nil
}

// writeFileAtomic writes a temp file next to p, fsyncs, fixes mode and
// owner, and renames it over p.
func writeFileAtomic(p string, data []byte, mode os.FileMode, chown func(string) error) error {
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if chown != nil {
		if err := chown(tmp); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
