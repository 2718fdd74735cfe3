package pgctl

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// PassEntry is one line of a libpq password file. "*" in Host, Port,
// Database or User matches anything. For replication connections Database
// must be "replication" (or "*"). The sidecar's own passfile names every
// member's host and port and never uses "*" for either (node/passfile.go):
// a wildcard host would hand the password to any host a connection string
// names.
type PassEntry struct {
	Host, Port, Database, User, Password string
}

// RenderPassfile renders entries in .pgpass format, escaping \ and : in
// every field except a lone "*" wildcard.
func RenderPassfile(entries []PassEntry) (string, error) {
	var b strings.Builder
	for i, e := range entries {
		fields := []string{e.Host, e.Port, e.Database, e.User, e.Password}
		for j, f := range fields {
			if strings.ContainsAny(f, "\n\r") {
				return "", fmt.Errorf("passfile entry %d: a field contains a newline", i+1)
			}
			if j < 4 && f == "" {
				return "", fmt.Errorf("passfile entry %d: empty host, port, database or user (use \"*\" to match any)", i+1)
			}
			if j < 4 && f == "*" {
				continue
			}
			fields[j] = strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(f)
		}
		b.WriteString(strings.Join(fields, ":") + "\n")
	}
	return b.String(), nil
}

// WritePassfile atomically writes a libpq password file with mode 0600,
// owned by the OS user owner when the caller is root ("" keeps the caller
// as owner). libpq ignores a passfile readable by group or others.
func WritePassfile(path, owner string, entries []PassEntry) error {
	text, err := RenderPassfile(entries)
	if err != nil {
		return fmt.Errorf("writing passfile %s: %w", path, err)
	}
	var chown func(string) error
	if owner != "" && os.Geteuid() == 0 {
		u, err := user.Lookup(owner)
		if err != nil {
			return fmt.Errorf("writing passfile %s: owner: %w", path, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		chown = func(p string) error { return os.Lchown(p, uid, gid) }
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing passfile %s: %w", path, err)
	}
	if err := writeFileAtomic(path, []byte(text), 0o600, chown); err != nil {
		return fmt.Errorf("writing passfile %s: %w", path, err)
	}
	return nil
}
