package pgctl

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Conninfo describes a connection as libpq keywords (host, port, user,
// dbname, passfile, sslmode, application_name, keepalives, ...). The same
// keys give both forms a connection string takes here:
//
//   - String: the libpq key=value text for libpq tools (pg_basebackup,
//     pg_rewind) and for primary_conninfo;
//   - PgxConfig: the pgx configuration. pgx hands every keyword it does not
//     know to the server as a run-time parameter, and the server then
//     refuses the login (`FATAL: unrecognized configuration parameter
//     "keepalives_count"`), so only keys pgx understands reach it; libpq's
//     TCP keepalive keys become pgx's dialer settings, other libpq-only
//     client keys are dropped, and an unknown key is an error.
//
// Never build a pgx connection from a conninfo meant for libpq any other way.
type Conninfo map[string]string

// String renders the libpq key=value form (BuildConninfo).
func (c Conninfo) String() string { return BuildConninfo(c) }

// With returns a copy with key set to value.
func (c Conninfo) With(key, value string) Conninfo {
	out := make(Conninfo, len(c)+1)
	for k, v := range c {
		out[k] = v
	}
	out[key] = value
	return out
}

// pgxKeys are the libpq keywords pgx understands itself (pgconn's
// ParseConfig, v5), plus application_name, which travels to the server as
// the run-time parameter it is meant to be.
var pgxKeys = map[string]bool{
	"host": true, "port": true, "dbname": true, "user": true, "password": true, "passfile": true,
	"connect_timeout": true, "sslmode": true, "sslkey": true, "sslcert": true, "sslrootcert": true,
	"sslpassword": true, "sslsni": true, "sslnegotiation": true, "krbspn": true, "krbsrvname": true,
	"target_session_attrs": true, "service": true, "servicefile": true,
	"application_name": true, "options": true,
}

// libpqClientKeys are libpq client settings pgx has no equivalent for:
// they are left out of the pgx configuration (keepalives* are mapped to its
// dialer instead).
var libpqClientKeys = map[string]bool{
	"keepalives": true, "keepalives_idle": true, "keepalives_interval": true, "keepalives_count": true,
	"tcp_user_timeout": true, "hostaddr": true, "fallback_application_name": true, "client_encoding": true,
	"gssencmode": true, "gsslib": true, "channel_binding": true, "requirepeer": true, "require_auth": true,
	"sslcrl": true, "sslcrldir": true, "sslcompression": true, "ssl_min_protocol_version": true,
	"ssl_max_protocol_version": true, "load_balance_hosts": true, "replication": true,
}

// PgxConfig builds the pgx configuration from the same keys as String.
func (c Conninfo) PgxConfig() (*pgx.ConnConfig, error) {
	kv := make(map[string]string, len(c))
	var unknown []string
	for k, v := range c {
		switch {
		case k == "":
		case pgxKeys[k]:
			kv[k] = v
		case libpqClientKeys[k]:
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("pgx configuration from the conninfo: unsupported conninfo key(s) %s (pgx would send them to the server as run-time parameters)", strings.Join(unknown, ", "))
	}
	ka, err := c.keepAlive()
	if err != nil {
		return nil, fmt.Errorf("pgx configuration from the conninfo: %w", err)
	}
	cfg, err := pgx.ParseConfig(BuildConninfo(kv))
	if err != nil {
		return nil, fmt.Errorf("pgx configuration from the conninfo: %s", redact(err.Error()))
	}
	if ka != nil {
		d := &net.Dialer{KeepAliveConfig: *ka}
		cfg.DialFunc = d.DialContext
	}
	return cfg, nil
}

// keepAlive maps libpq's keepalives, keepalives_idle, keepalives_interval
// and keepalives_count (seconds, count) to Go's TCP keepalive settings; nil
// when none is set (pgx's default dialer then applies).
func (c Conninfo) keepAlive() (*net.KeepAliveConfig, error) {
	set := false
	ka := net.KeepAliveConfig{Enable: true}
	for _, f := range []struct {
		key string
		dst *time.Duration
	}{{"keepalives_idle", &ka.Idle}, {"keepalives_interval", &ka.Interval}} {
		v, ok := c[f.key]
		if !ok || v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s=%q: want whole seconds", f.key, v)
		}
		*f.dst, set = time.Duration(n)*time.Second, true
	}
	if v, ok := c["keepalives_count"]; ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("keepalives_count=%q: want a count", v)
		}
		ka.Count, set = n, true
	}
	if v, ok := c["keepalives"]; ok && v != "" {
		switch v {
		case "0":
			return &net.KeepAliveConfig{Enable: false}, nil
		case "1":
			set = true
		default:
			return nil, fmt.Errorf("keepalives=%q: want 0 or 1", v)
		}
	}
	if !set {
		return nil, nil
	}
	return &ka, nil
}

// BuildConninfo renders a libpq key=value connection string with sorted
// keys; a value is single-quoted (with \ and ' escaped) when it is empty or
// holds spaces, quotes or backslashes. Empty keys are skipped.
func BuildConninfo(kv map[string]string) string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		if k != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+quoteConninfoValue(kv[k]))
	}
	return strings.Join(parts, " ")
}

func quoteConninfoValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\=") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// ConninfoAddr extracts host:port from a key=value conninfo (a node row's), "" when it names
// no TCP host (a socket directory, or no host at all).
func ConninfoAddr(conninfo string) string {
	host, port := "", "5432"
	for _, f := range strings.Fields(conninfo) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, "'")
		switch k {
		case "host":
			host = v
		case "port":
			if _, err := strconv.Atoi(v); err == nil {
				port = v
			}
		}
	}
	if host == "" || strings.HasPrefix(host, "/") {
		return ""
	}
	return net.JoinHostPort(host, port)
}
