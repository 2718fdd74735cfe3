package pgctl

import (
	"maps"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConninfo: the libpq string and the pgx configuration come from the
// same keys, and pgx never gets a key it would pass to the server as a
// run-time parameter.
func TestConninfo(t *testing.T) {
	passfile := filepath.Join(t.TempDir(), "pgpass")
	if err := WritePassfile(passfile, "", []PassEntry{
		{Host: "10.0.0.7", Port: "5433", Database: "*", User: "we ird'user", Password: `pa:ss\wo'rd x`},
		{Host: "localhost", Port: "5432", Database: "postgres", User: "postgres", Password: "sock-pw"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      Conninfo
		libpq   string
		host    string
		port    uint16
		user    string
		db      string
		pw      string
		runtime map[string]string
		tls     bool // a TLS config is set (sslmode other than disable)
		ka      *net.KeepAliveConfig
		err     string // PgxConfig fails with this in the message
	}{
		{
			name: "upstream with keepalives",
			in: Conninfo{"host": "10.0.0.7", "port": "5433", "user": "replicator", "application_name": "n2", "connect_timeout": "2",
				"keepalives": "1", "keepalives_idle": "2", "keepalives_interval": "1", "keepalives_count": "3", "sslmode": "disable"},
			libpq: "application_name=n2 connect_timeout=2 host=10.0.0.7 keepalives=1 keepalives_count=3 keepalives_idle=2 keepalives_interval=1 port=5433 sslmode=disable user=replicator",
			host:  "10.0.0.7", port: 5433, user: "replicator", db: "",
			runtime: map[string]string{"application_name": "n2"},
			ka:      &net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 3},
		},
		{
			name:  "keepalives off",
			in:    Conninfo{"host": "h", "user": "u", "keepalives": "0", "sslmode": "disable"},
			libpq: "host=h keepalives=0 sslmode=disable user=u",
			host:  "h", port: 5432, user: "u", db: "",
			runtime: map[string]string{},
			ka:      &net.KeepAliveConfig{Enable: false},
		},
		{
			name: "quoted values and passfile",
			in: Conninfo{"host": "10.0.0.7", "port": "5433", "user": "we ird'user", "dbname": `d\b`, "application_name": "my app",
				"passfile": passfile, "sslmode": "disable", "tcp_user_timeout": "1000"},
			libpq: `application_name='my app' dbname='d\\b' host=10.0.0.7 passfile=` + passfile + ` port=5433 sslmode=disable tcp_user_timeout=1000 user='we ird\'user'`,
			host:  "10.0.0.7", port: 5433, user: "we ird'user", db: `d\b`, pw: `pa:ss\wo'rd x`,
			runtime: map[string]string{"application_name": "my app"},
		},
		{
			name:  "socket directory with a space, passfile as localhost",
			in:    Conninfo{"host": "/tmp/my sockets", "port": "5432", "user": "postgres", "dbname": "postgres", "passfile": passfile, "sslmode": "disable"},
			libpq: "dbname=postgres host='/tmp/my sockets' passfile=" + passfile + " port=5432 sslmode=disable user=postgres",
			host:  "/tmp/my sockets", port: 5432, user: "postgres", db: "postgres", pw: "sock-pw",
			runtime: map[string]string{},
		},
		{
			name:  "sslmode require",
			in:    Conninfo{"host": "db.example", "user": "u", "sslmode": "require"},
			libpq: "host=db.example sslmode=require user=u",
			host:  "db.example", port: 5432, user: "u", db: "",
			runtime: map[string]string{},
			tls:     true,
		},
		{
			name:  "unknown key",
			in:    Conninfo{"host": "h", "user": "u", "search_pathx": "a", "bogus": "1"},
			libpq: "bogus=1 host=h search_pathx=a user=u",
			err:   "unsupported conninfo key(s) bogus, search_pathx",
		},
		{
			name:  "bad keepalives_idle",
			in:    Conninfo{"host": "h", "keepalives_idle": "soon"},
			libpq: "host=h keepalives_idle=soon",
			err:   `keepalives_idle="soon"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.String(); got != tc.libpq {
				t.Errorf("String:\ngot  %s\nwant %s", got, tc.libpq)
			}
			cfg, err := tc.in.PgxConfig()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PgxConfig error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.host || cfg.Port != tc.port || cfg.User != tc.user || cfg.Database != tc.db || cfg.Password != tc.pw {
				t.Errorf("pgx config host %q port %d user %q database %q password %q; want %q %d %q %q %q",
					cfg.Host, cfg.Port, cfg.User, cfg.Database, cfg.Password, tc.host, tc.port, tc.user, tc.db, tc.pw)
			}
			if !maps.Equal(cfg.RuntimeParams, tc.runtime) {
				t.Errorf("run-time parameters %v, want %v", cfg.RuntimeParams, tc.runtime)
			}
			if (cfg.TLSConfig != nil) != tc.tls {
				t.Errorf("TLS config set: %v, want %v", cfg.TLSConfig != nil, tc.tls)
			}
			ka, err := tc.in.keepAlive()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.ka == nil && ka != nil, tc.ka != nil && (ka == nil || *ka != *tc.ka):
				t.Errorf("keepalive %+v, want %+v", ka, tc.ka)
			}
		})
	}
}
