package pki

import (
	"crypto/tls"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseURI(t *testing.T) {
	cases := []struct {
		uri  string
		want Identity
		err  string
	}{
		{uri: "hasidecar://prod/node/pg1", want: Identity{"prod", RoleNode, "pg1"}},
		{uri: "hasidecar://prod/operator/alice", want: Identity{"prod", RoleOperator, "alice"}},
		{uri: "hasidecar://prod/monitor/prom-1", want: Identity{"prod", RoleMonitor, "prom-1"}},
		{uri: "spiffe://prod/node/pg1", err: "is not a hasidecar:// identity"},
		{uri: "hasidecar://prod/admin/pg1", err: `role "admin"`},
		{uri: "hasidecar://prod/node/pg1/x", err: "want hasidecar://CLUSTER/ROLE/NAME"},
		{uri: "hasidecar://prod/node", err: "want hasidecar://CLUSTER/ROLE/NAME"},
		{uri: "hasidecar://prod/node/pg1?x=1", err: "want hasidecar://CLUSTER/ROLE/NAME"},
		{uri: "hasidecar://prod:80/node/pg1", err: "want hasidecar://CLUSTER/ROLE/NAME"},
		{uri: "hasidecar:///node/pg1", err: `cluster name ""`},
		{uri: "hasidecar://prod/node/..", err: `name ".."`},
	}
	for _, c := range cases {
		t.Run(c.uri, func(t *testing.T) {
			u, err := url.Parse(c.uri)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseURI(u)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
			if got.URI().String() != c.uri {
				t.Fatalf("URI() = %s, want %s", got.URI(), c.uri)
			}
		})
	}
}

func initDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	_, err := Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []NodeSpec{
		{Name: "pg1", Addrs: []string{"127.0.0.1"}},
		{Name: "pg2", Addrs: []string{"127.0.0.1", "db2.example"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func files(dir, name string) Files {
	return Files{CA: filepath.Join(dir, CACertFile), Cert: filepath.Join(dir, CertFile(name)), Key: filepath.Join(dir, KeyFile(name))}
}

func TestInitWritesPrivateFilesWithIdentities(t *testing.T) {
	dir := initDir(t)
	want := map[string]Identity{
		"pg1":      {"prod", RoleNode, "pg1"},
		"pg2":      {"prod", RoleNode, "pg2"},
		"operator": {"prod", RoleOperator, "operator"},
		"monitor":  {"prod", RoleMonitor, "monitor"},
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2+2*len(want) {
		t.Fatalf("%d files in %s, want %d", len(entries), dir, 2+2*len(want))
	}
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	for name, id := range want {
		s, err := Load(files(dir, name))
		if err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
		if s.Identity() != id {
			t.Errorf("%s: identity %+v, want %+v", name, s.Identity(), id)
		}
		leaf := s.material().leaf
		if leaf.Subject.CommonName != name || leaf.Subject.OrganizationalUnit[0] != string(id.Role) {
			t.Errorf("%s: subject %s", name, leaf.Subject)
		}
	}
	pg2 := mustLoad(t, dir, "pg2").material().leaf
	if len(pg2.IPAddresses) != 1 || !pg2.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(pg2.DNSNames) != 1 || pg2.DNSNames[0] != "db2.example" {
		t.Errorf("pg2 SANs: %v %v", pg2.IPAddresses, pg2.DNSNames)
	}
	if op := mustLoad(t, dir, "operator").material().leaf; len(op.IPAddresses) != 0 {
		t.Errorf("operator certificate has addresses %v", op.IPAddresses)
	}
	// A second init must not replace the CA the cluster trusts.
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	_, err = Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []NodeSpec{{Name: "pg1", Addrs: []string{"127.0.0.1"}}}})
	if err == nil || !strings.Contains(err.Error(), "already holds a cluster CA") {
		t.Fatalf("second init: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("second init changed ca.key")
	}
}

func mustLoad(t *testing.T, dir, name string) *Store {
	t.Helper()
	s, err := Load(files(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInitRefusesBadInput(t *testing.T) {
	cases := []struct {
		name string
		o    InitOptions
		err  string
	}{
		{"no dir", InitOptions{Cluster: "c", Nodes: []NodeSpec{{"pg1", []string{"127.0.0.1"}}}}, "--dir is required"},
		{"no node", InitOptions{Dir: "x", Cluster: "c"}, "at least one --node"},
		{"bad cluster", InitOptions{Dir: "x", Cluster: "a/b", Nodes: []NodeSpec{{"pg1", []string{"127.0.0.1"}}}}, `cluster name "a/b"`},
		{"twice", InitOptions{Dir: "x", Cluster: "c", Nodes: []NodeSpec{{"pg1", []string{"127.0.0.1"}}, {"pg1", []string{"127.0.0.2"}}}}, `"pg1" is used twice`},
		{"operator named like a node", InitOptions{Dir: "x", Cluster: "c", Nodes: []NodeSpec{{"pg1", []string{"127.0.0.1"}}}, Operators: []string{"pg1"}}, `"pg1" is used twice`},
		{"ca", InitOptions{Dir: "x", Cluster: "c", Nodes: []NodeSpec{{"ca", []string{"127.0.0.1"}}}}, `"ca" is used twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.o.Dir != "" {
				c.o.Dir = filepath.Join(dir, c.o.Dir)
			}
			_, err := Init(c.o)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want %q", err, c.err)
			}
			if c.o.Dir != "" {
				if _, err := os.Stat(filepath.Join(c.o.Dir, CAKeyFile)); err == nil {
					t.Fatal("a refused init wrote a CA")
				}
			}
		})
	}
}

func TestParseNodeSpec(t *testing.T) {
	s, err := ParseNodeSpec("pg1=10.0.0.1, db1.example")
	if err != nil || s.Name != "pg1" || len(s.Addrs) != 2 || s.Addrs[1] != "db1.example" {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range []string{"pg1", "=10.0.0.1", "pg1=", "pg 1=10.0.0.1", "pg1=10.0.0.1,,x"} {
		if _, err := ParseNodeSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestKeyFileReadableByOthersIsRefused(t *testing.T) {
	dir := initDir(t)
	key := filepath.Join(dir, KeyFile("pg1"))
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(files(dir, "pg1"))
	want := "key file " + key + " is readable by others (mode 0644); chmod 600 it"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestLoadRefusesCertificateOfAnotherCA(t *testing.T) {
	a, b := initDir(t), initDir(t)
	f := files(a, "pg1")
	f.CA = filepath.Join(b, CACertFile)
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "is not signed by the CA") {
		t.Fatalf("err = %v", err)
	}
}

// handshake runs a TLS handshake between a server and a client over loopback
// and returns what each side saw.
func handshake(t *testing.T, server, client *tls.Config, serverName string) (peer tls.ConnectionState, srvErr, cliErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	var st tls.ConnectionState
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		st = tc.ConnectionState()
		done <- err
	}()
	cfg := client.Clone()
	cfg.ServerName = serverName
	conn, cliErr := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
	if conn != nil {
		// TLS 1.3: the server verifies the client after the client's
		// handshake returns; a read surfaces its verdict.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, rerr := conn.Read(make([]byte, 1))
		if cliErr == nil && rerr != nil && !strings.Contains(rerr.Error(), "EOF") && !strings.Contains(rerr.Error(), "timeout") {
			cliErr = rerr
		}
		conn.Close()
	}
	srvErr = <-done
	return st, srvErr, cliErr
}

func TestHandshakeRoles(t *testing.T) {
	dir := initDir(t)
	other := initDir(t)
	pg1, pg2 := mustLoad(t, dir, "pg1"), mustLoad(t, dir, "pg2")
	op, mon := mustLoad(t, dir, "operator"), mustLoad(t, dir, "monitor")
	stranger := mustLoad(t, other, "pg2")

	t.Run("node to node", func(t *testing.T) {
		st, srvErr, cliErr := handshake(t, pg1.ServerConfig(), pg2.ClientConfig("prod"), "127.0.0.1")
		if srvErr != nil || cliErr != nil {
			t.Fatalf("server %v, client %v", srvErr, cliErr)
		}
		id, err := FromConnState(st)
		if err != nil || id != (Identity{"prod", RoleNode, "pg2"}) {
			t.Fatalf("server saw %+v, %v", id, err)
		}
	})
	t.Run("operator to node", func(t *testing.T) {
		st, srvErr, cliErr := handshake(t, pg1.ServerConfig(), op.ClientConfig(""), "127.0.0.1")
		if srvErr != nil || cliErr != nil {
			t.Fatalf("server %v, client %v", srvErr, cliErr)
		}
		if id, _ := FromConnState(st); id.Role != RoleOperator {
			t.Fatalf("server saw %+v", id)
		}
	})
	t.Run("wrong host name", func(t *testing.T) {
		_, _, cliErr := handshake(t, pg1.ServerConfig(), pg2.ClientConfig("prod"), "db9.example")
		if cliErr == nil || !strings.Contains(cliErr.Error(), "db9.example") {
			t.Fatalf("client err = %v", cliErr)
		}
	})
	t.Run("other cluster name", func(t *testing.T) {
		_, _, cliErr := handshake(t, pg1.ServerConfig(), pg2.ClientConfig("staging"), "127.0.0.1")
		if cliErr == nil || !strings.Contains(cliErr.Error(), `belongs to cluster "prod", not "staging"`) {
			t.Fatalf("client err = %v", cliErr)
		}
	})
	t.Run("a monitor certificate cannot serve", func(t *testing.T) {
		// The monitor certificate has no server use and no addresses.
		_, _, cliErr := handshake(t, mon.ServerConfig(), pg2.ClientConfig("prod"), "127.0.0.1")
		if cliErr == nil {
			t.Fatal("a client accepted a monitor certificate as a server")
		}
	})
	t.Run("client from another CA", func(t *testing.T) {
		_, srvErr, _ := handshake(t, pg1.ServerConfig(), stranger.ClientConfig(""), "127.0.0.1")
		if srvErr == nil || !strings.Contains(srvErr.Error(), "certificate") {
			t.Fatalf("server err = %v", srvErr)
		}
	})
	t.Run("server from another CA", func(t *testing.T) {
		_, _, cliErr := handshake(t, stranger.ServerConfig(), pg1.ClientConfig("prod"), "127.0.0.1")
		if cliErr == nil || !strings.Contains(cliErr.Error(), "unknown authority") {
			t.Fatalf("client err = %v", cliErr)
		}
	})
	t.Run("client without certificate", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: pg1.material().pool, MinVersion: tls.VersionTLS13}
		_, srvErr, _ := handshake(t, pg1.ServerConfig(), cfg, "127.0.0.1")
		if srvErr == nil {
			t.Fatal("server accepted a client without a certificate")
		}
	})
}

func TestRenewIsPickedUpByReload(t *testing.T) {
	dir := initDir(t)
	s := mustLoad(t, dir, "pg2")
	before := s.material().leaf
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("reload without change: %v %v", changed, err)
	}
	// A different mtime even on coarse file systems.
	time.Sleep(10 * time.Millisecond)
	if _, err := Renew(dir, "pg2", 90*24*time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	changed, err := s.Reload()
	if err != nil || !changed {
		t.Fatalf("reload after renew: %v %v", changed, err)
	}
	after := s.material().leaf
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("renew kept the serial")
	}
	if s.Identity() != (Identity{"prod", RoleNode, "pg2"}) || len(after.DNSNames) != 1 || after.DNSNames[0] != "db2.example" {
		t.Fatalf("renewed certificate lost its identity or addresses: %+v %v", s.Identity(), after.DNSNames)
	}
	if d := time.Until(after.NotAfter); d > 91*24*time.Hour || d < 89*24*time.Hour {
		t.Fatalf("renewed lifetime %s", d)
	}
	// A broken file keeps the old material in use.
	if err := os.WriteFile(filepath.Join(dir, CertFile("pg2")), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reload(); err == nil {
		t.Fatal("reload of a broken certificate succeeded")
	}
	if s.material().leaf.SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Fatal("a failed reload replaced the certificate")
	}
}

func TestIssueOne(t *testing.T) {
	dir := initDir(t)
	if _, err := IssueOne(dir, RoleNode, "pg3", []string{"10.0.0.3"}, 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if id := mustLoad(t, dir, "pg3").Identity(); id != (Identity{"prod", RoleNode, "pg3"}) {
		t.Fatalf("pg3: %+v", id)
	}
	if _, err := IssueOne(dir, RoleNode, "pg3", []string{"10.0.0.3"}, 0, time.Time{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second issue: %v", err)
	}
	if _, err := IssueOne(dir, RoleMonitor, "grafana", []string{"10.0.0.9"}, 0, time.Time{}); err == nil || !strings.Contains(err.Error(), "only node certificates carry addresses") {
		t.Fatalf("monitor with address: %v", err)
	}
}
