package keeper

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// passSecret is one password the generated passfile carries.
type passSecret struct{ user, password string }

// pgEndpoint is a Postgres host and port exactly as a connection string
// names them: libpq compares the passfile's host field with the host text
// of the connection, not with a resolved address.
type pgEndpoint struct{ host, port string }

// memberEndpoint is where a node row's Postgres is reached, derived the way
// upstreamConninfo derives the host and port it connects to; ok is false
// for a row without a TCP host (a witness, a socket path, no conninfo).
func memberEndpoint(n *pb.Node) (pgEndpoint, bool) {
	if n.GetKind() != pb.NodeKind_NODE_KIND_DATA {
		return pgEndpoint{}, false
	}
	addr := pgctl.ConninfoAddr(n.GetConninfo())
	if addr == "" {
		return pgEndpoint{}, false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return pgEndpoint{}, false
	}
	return pgEndpoint{host: host, port: port}, true
}

// usable: a host and port that a passfile entry can name without matching
// anything else: not empty, not the "*" wildcard, not a socket directory.
func (e pgEndpoint) usable() bool {
	return e.host != "" && e.port != "" && e.host != "*" && e.port != "*" && !strings.HasPrefix(e.host, "/")
}

// passfileEntries is the content of the generated libpq password file: each
// secret once per Postgres endpoint of the cluster's data members (the
// nodes table) and of this node itself, so that a password is only ever
// sent to a member's Postgres, never to whatever host a connection string
// names. Duplicate endpoints collapse; the order is stable (by host, then
// port, then the order of secrets), so that the rendered file only changes
// when the membership does. No entry has "*" as host or port. The local
// superuser connections go over the unix socket with peer authentication
// and need no entry.
func passfileEntries(st *pb.ClusterState, self pgEndpoint, secrets []passSecret) []pgctl.PassEntry {
	seen := map[pgEndpoint]bool{}
	var eps []pgEndpoint
	add := func(e pgEndpoint) {
		if e.usable() && !seen[e] {
			seen[e] = true
			eps = append(eps, e)
		}
	}
	add(self)
	for _, n := range st.GetNodes() {
		if e, ok := memberEndpoint(n); ok {
			add(e)
		}
	}
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].host != eps[j].host {
			return eps[i].host < eps[j].host
		}
		return eps[i].port < eps[j].port
	})
	var entries []pgctl.PassEntry
	for _, e := range eps {
		for _, s := range secrets {
			entries = append(entries, pgctl.PassEntry{Host: e.host, Port: e.port, Database: "*", User: s.user, Password: s.password})
		}
	}
	return entries
}

// loadPassSecrets reads the configured password files (at start: a changed
// file takes effect at the next start, as before).
func (a *Keeper) loadPassSecrets() error {
	pc := a.cfg.Postgres
	a.passSecrets = nil
	for _, f := range []struct{ user, file string }{{pc.ReplicationUser, pc.ReplicationPasswordFile}, {pc.Superuser, pc.SuperuserPasswordFile}} {
		if f.file == "" {
			continue
		}
		pw, err := readSecret(f.file)
		if err != nil {
			return err
		}
		a.passSecrets = append(a.passSecrets, passSecret{user: f.user, password: pw})
	}
	return nil
}

// refreshPassfile rewrites the passfile when its content for the current
// membership differs from what was last written (mode 0600, owned by
// postgres.os_user). Preflight and the reconciler call it; the reconciler
// does before every plan, so a member that joins or moves has its entry
// before anything connects to it.
func (a *Keeper) refreshPassfile() error {
	pc := a.cfg.Postgres
	self := pgEndpoint{host: pc.Host, port: strconv.Itoa(pc.Port)}
	entries := passfileEntries(a.log.State(), self, a.passSecrets)
	text, err := pgctl.RenderPassfile(entries)
	if err != nil {
		return fmt.Errorf("render passfile %s: %w", a.passfile, err)
	}
	if a.passWritten && text == a.passText {
		return nil
	}
	if err := pgctl.WritePassfile(a.passfile, pc.OSUser, entries); err != nil {
		return fmt.Errorf("write passfile %s: %w", a.passfile, err)
	}
	a.passText, a.passWritten = text, true
	a.logger.Info("passfile written", "path", a.passfile, "entries", len(entries))
	return nil
}
