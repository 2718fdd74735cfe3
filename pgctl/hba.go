package pgctl

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
)

// IdentMap is the pg_ident.conf map that lets local OS users connect as the
// database superuser over the unix socket (peer authentication).
const IdentMap = "hasidecar"

// HBAConfig is the input of RenderHBA.
type HBAConfig struct {
	AuthMethod      string   // scram-sha-256 (default) | md5 | trust — for TCP and other local users
	AllowedNetworks []string // CIDRs that get replication and database entries
	ReplicationUser string   // empty: no replication entries over TCP
	Superuser       string   // default "postgres"
	// IdentUsers are the OS users allowed to connect over the unix socket as
	// the superuser (peer, map=hasidecar). Default: root and postgres.
	IdentUsers []string
	Extra      []string // raw pg_hba lines, placed before the generic entries
}

var authMethods = map[string]bool{"scram-sha-256": true, "md5": true, "trust": true}

func (h HBAConfig) withDefaults() HBAConfig {
	if h.AuthMethod == "" {
		h.AuthMethod = "scram-sha-256"
	}
	if h.Superuser == "" {
		h.Superuser = "postgres"
	}
	if len(h.IdentUsers) == 0 {
		h.IdentUsers = []string{"root", "postgres"}
	}
	return h
}

// Validate reports the first problem with h.
func (h HBAConfig) Validate() error {
	h = h.withDefaults()
	if !authMethods[h.AuthMethod] {
		return fmt.Errorf("auth method %q is not one of scram-sha-256, md5, trust: fix postgres.auth_method", h.AuthMethod)
	}
	for _, n := range h.AllowedNetworks {
		if _, _, err := net.ParseCIDR(n); err != nil {
			return fmt.Errorf("allowed network %q is not a CIDR (like 10.0.0.0/24 or 10.0.0.5/32): fix postgres.allowed_networks", n)
		}
	}
	for _, u := range append([]string{h.Superuser, h.ReplicationUser}, h.IdentUsers...) {
		if strings.ContainsAny(u, "\n\r\"") {
			return fmt.Errorf("user name %q contains a newline or a double quote", u)
		}
	}
	for _, l := range h.Extra {
		if strings.ContainsAny(l, "\n\r") {
			return fmt.Errorf("extra pg_hba line %q contains a newline: give one entry per line in postgres.hba", l)
		}
	}
	return nil
}

var plainNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// hbaName quotes a user name for pg_hba.conf / pg_ident.conf when needed
// (special characters, or a keyword such as all / replication).
func hbaName(n string) string {
	switch n {
	case "all", "sameuser", "samerole", "samegroup", "replication":
		return `"` + n + `"`
	}
	if plainNameRE.MatchString(n) {
		return n
	}
	return `"` + n + `"`
}

// RenderHBA renders pg_hba.conf and pg_ident.conf. Order (first match wins):
// the superuser over the unix socket via peer map=hasidecar (normal and
// replication), the Extra lines, loopback entries, the allowed networks, and
// every other local user with AuthMethod. Pure; call Validate for errors.
func RenderHBA(h HBAConfig) (hba, ident string) {
	h = h.withDefaults()
	su := hbaName(h.Superuser)
	var b strings.Builder
	row := func(typ, db, user, addr, method string) {
		fmt.Fprintf(&b, "%-7s %-12s %-16s %-24s %s\n", typ, db, user, addr, method)
	}
	b.WriteString(managedHeader)
	b.WriteString("# TYPE  DATABASE     USER             ADDRESS                  METHOD\n")
	b.WriteString("\n# the superuser over the unix socket, for the OS users in pg_ident.conf map " + IdentMap + "\n")
	row("local", "all", su, "", "peer map="+IdentMap)
	row("local", "replication", su, "", "peer map="+IdentMap)
	if len(h.Extra) > 0 {
		b.WriteString("\n# extra entries (postgres.hba)\n")
		for _, l := range h.Extra {
			b.WriteString(strings.TrimSpace(l) + "\n")
		}
	}
	nets := append([]string{"127.0.0.1/32", "::1/128"}, h.AllowedNetworks...)
	b.WriteString("\n# loopback and allowed networks\n")
	for _, n := range nets {
		if h.ReplicationUser != "" {
			row("host", "replication", hbaName(h.ReplicationUser), n, h.AuthMethod)
		}
		row("host", "all", "all", n, h.AuthMethod)
	}
	b.WriteString("\n# other local users\n")
	row("local", "all", "all", "", h.AuthMethod)

	var id strings.Builder
	id.WriteString(managedHeader)
	id.WriteString("# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n")
	for _, u := range h.IdentUsers {
		fmt.Fprintf(&id, "%-10s %-16s %s\n", IdentMap, hbaName(u), su)
	}
	return b.String(), id.String()
}

// WriteHBA validates h and writes pg_hba.conf and pg_ident.conf. Postgres
// applies them on Reload.
func (c *Controller) WriteHBA(ctx context.Context, h HBAConfig) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := h.Validate(); err != nil {
		return false, fmt.Errorf("writing pg_hba.conf: %w", err)
	}
	hba, ident := RenderHBA(h)
	ch1, err := c.writeDataFile("pg_hba.conf", []byte(hba))
	if err != nil {
		return false, err
	}
	ch2, err := c.writeDataFile("pg_ident.conf", []byte(ident))
	return ch1 || ch2, err
}
