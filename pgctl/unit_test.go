package pgctl

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgpassfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("reading golden file (run go test -run %s -update to create it): %v", t.Name(), err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestRenderHBAGolden(t *testing.T) {
	hba, ident := RenderHBA(HBAConfig{
		AllowedNetworks: []string{"10.0.0.0/24", "fd00::/64"},
		ReplicationUser: "replicator",
		Superuser:       "postgres",
		IdentUsers:      []string{"root", "postgres"},
		Extra:           []string{"host all baduser 10.0.0.66/32 reject", "  hostssl app app 10.0.1.0/24 scram-sha-256  "},
	})
	golden(t, "pg_hba.conf.golden", hba)
	golden(t, "pg_ident.conf.golden", ident)
}

func TestRenderHBADefaultsAndQuoting(t *testing.T) {
	hba, ident := RenderHBA(HBAConfig{ReplicationUser: "repl user", AuthMethod: "trust"})
	for _, want := range []string{
		"local   all          postgres                                  peer map=hasidecar\n",
		`host    replication  "repl user"      127.0.0.1/32             trust`,
		"host    all          all              ::1/128                  trust",
	} {
		if !strings.Contains(hba, want) {
			t.Errorf("pg_hba.conf lacks %q:\n%s", want, hba)
		}
	}
	if !strings.Contains(ident, "hasidecar  root             postgres\n") {
		t.Errorf("pg_ident.conf lacks the root mapping:\n%s", ident)
	}
	if strings.Contains(hba, "\"repl user\"      10.") {
		t.Error("no allowed networks were given")
	}
}

func TestHBAValidate(t *testing.T) {
	for _, h := range []HBAConfig{
		{AuthMethod: "password"},
		{AllowedNetworks: []string{"10.0.0.1"}},
		{Extra: []string{"host all all 0.0.0.0/0 trust\nlocal all all trust"}},
		{ReplicationUser: `a"b`},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", h)
		}
	}
	if err := (HBAConfig{AllowedNetworks: []string{"10.0.0.0/8", "::/0"}}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestManagedConfigGolden(t *testing.T) {
	s := ManagedSettings(Options{DataDir: "/var/lib/hasidecar/pgdata", Port: 5433, ListenAddresses: "10.0.0.1,localhost", SocketDir: "/run/hasidecar", WALKeepSize: 100<<20 + 1})
	s["search_path"] = `"$user", public`
	s["archive_command"] = `test ! -f /arch/%f && cp %p /arch/%f 'x' \d`
	text, err := RenderConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "postgresql.hasidecar.conf.golden", text)
	if _, err := RenderConfig(map[string]string{"bad key": "1"}); err == nil {
		t.Error("a bad setting name was accepted")
	}
}

func TestManagedSettingsDefaults(t *testing.T) {
	s := ManagedSettings(Options{DataDir: "/d/pgdata"})
	want := map[string]string{"port": "5432", "listen_addresses": "localhost", "unix_socket_directories": "/d/run",
		"wal_keep_size": "512MB", "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on", "logging_collector": "off"}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %q, want %q", k, s[k], v)
		}
	}
}

func TestRenderIncludesIdempotent(t *testing.T) {
	orig := "# comment\nshared_buffers = 128MB\ninclude_if_exists = 'postgresql.hasidecar.conf'\nwork_mem = 4MB\n\n\n"
	once := RenderIncludes(orig)
	want := "# comment\nshared_buffers = 128MB\nwork_mem = 4MB\n\n" +
		"include_if_exists = 'postgresql.hasidecar.conf'\ninclude_if_exists = 'postgresql.hasidecar.recovery.conf'\n"
	if once != want {
		t.Fatalf("got\n%q\nwant\n%q", once, want)
	}
	if twice := RenderIncludes(once); twice != once {
		t.Fatalf("not idempotent:\n%q", twice)
	}
	if got := RenderIncludes(""); !strings.HasPrefix(got, "include_if_exists") {
		t.Errorf("empty postgresql.conf: %q", got)
	}
}

func TestQuoteConfValue(t *testing.T) {
	for in, want := range map[string]string{
		"on":        "'on'",
		"it's":      "'it''s'",
		`C:\dir`:    `'C:\\dir'`,
		"a\nb":      `'a\nb'`,
		"":          "''",
		"%m [%p] ":  "'%m [%p] '",
		`host=x '`:  `'host=x '''`,
		"tab\there": `'tab\there'`,
	} {
		if got := QuoteConfValue(in); got != want {
			t.Errorf("QuoteConfValue(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestBuildConninfo(t *testing.T) {
	got := BuildConninfo(map[string]string{
		"user":             "replicator",
		"host":             "/tmp/my sockets",
		"port":             "5432",
		"application_name": "node-1",
		"options":          `-c search_path='a\b'`,
		"sslmode":          "",
		"":                 "ignored",
	})
	want := `application_name=node-1 host='/tmp/my sockets' options='-c search_path=\'a\\b\'' port=5432 sslmode='' user=replicator`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestParseFormatLSN(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/1549F38", "1/0"} {
		n, err := ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := FormatLSN(n); got != s {
			t.Errorf("round trip %s -> %d -> %s", s, n, got)
		}
	}
	if n, _ := ParseLSN("16/B374D848"); n != 0x16_B374D848 {
		t.Errorf("ParseLSN = %#x", n)
	}
	for _, bad := range []string{"", "0", "/1", "1/", "G/0", "1/2/3", "123456789/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
	for _, n := range []uint64{0, 1, 1 << 32, 0xDEADBEEF_CAFEBABE, ^uint64(0)} {
		if got, err := ParseLSN(FormatLSN(n)); err != nil || got != n {
			t.Errorf("round trip %#x: %#x %v", n, got, err)
		}
	}
}

func TestPassfileEscaping(t *testing.T) {
	entries := []PassEntry{
		{Host: "10.0.0.1", Port: "5432", Database: "replication", User: "repl", Password: `pa:ss\wo*rd`},
		{Host: "*", Port: "*", Database: "*", User: `we:ird\user`, Password: "*"},
	}
	text, err := RenderPassfile(entries)
	if err != nil {
		t.Fatal(err)
	}
	want := "10.0.0.1:5432:replication:repl:pa\\:ss\\\\wo*rd\n*:*:*:we\\:ird\\\\user:*\n"
	if text != want {
		t.Fatalf("got %q\nwant %q", text, want)
	}
	pf, err := pgpassfile.ParsePassfile(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if pw := pf.FindPassword("10.0.0.1", "5432", "replication", "repl"); pw != `pa:ss\wo*rd` {
		t.Errorf("libpq-style lookup got %q", pw)
	}
	if pw := pf.FindPassword("h", "1", "d", `we:ird\user`); pw != "*" {
		t.Errorf("wildcard lookup got %q", pw)
	}
	if _, err := RenderPassfile([]PassEntry{{Host: "h", Port: "1", Database: "d", User: "u", Password: "a\nb"}}); err == nil {
		t.Error("newline accepted")
	}
	if _, err := RenderPassfile([]PassEntry{{Host: "", Port: "1", Database: "d", User: "u"}}); err == nil {
		t.Error("empty host accepted")
	}

	p := filepath.Join(t.TempDir(), "sub", "pgpass")
	if err := WritePassfile(p, "", entries); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 0600", st.Mode().Perm())
	}
	// A socket directory counts as host "localhost", as in libpq.
	cfg, err := Conninfo{"host": "/run/sock", "port": "5432", "dbname": "replication", "user": "repl", "passfile": p}.PgxConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "" {
		t.Errorf("socket host matched 10.0.0.1: %q", cfg.Password)
	}
}

func TestParseControlData(t *testing.T) {
	b, err := os.ReadFile("testdata/controldata.txt")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseControlData(string(b))
	if err != nil {
		t.Fatal(err)
	}
	want := ControlData{SystemIdentifier: 7301234567890123456, State: "shut down in recovery", TimelineID: 2,
		CheckpointLSN: 0x16_B374D848, RedoLSN: 0x16_B374D810, MinRecoveryEndLSN: 0x16_B374D8C0, MinRecoveryEndTimeline: 2,
		HotStandby: map[string]int64{"max_connections": 150, "max_worker_processes": 8, "max_wal_senders": 10,
			"max_prepared_transactions": 0, "max_locks_per_transaction": 64}}
	if !reflect.DeepEqual(*d, want) {
		t.Errorf("got %+v\nwant %+v", *d, want)
	}
	if !d.CleanlyShutDown() {
		t.Error("CleanlyShutDown = false")
	}
	if _, err := ParseControlData("Database cluster state: in production\n"); err == nil {
		t.Error("incomplete output accepted")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"host=a password=secret user=b":       "host=a password=******** user=b",
		`host=a password='se cr\'et' user=b`:  "host=a password=******** user=b",
		"postgresql://u:secret@h:5432/db":     "postgresql://u:********@h:5432/db",
		"postgres://h/db?password=secret&x=1": "postgres://h/db?password=********&x=1",
		"no secrets here: host=a user=b":      "no secrets here: host=a user=b",
		"PASSWORD = hunter2 port=1":           "PASSWORD = ******** port=1",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSCRAMVerifier(t *testing.T) {
	salt := []byte("0123456789abcdef")
	v, err := scramVerifier("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$") {
		t.Errorf("verifier %s", v)
	}
	if !scramMatches(v, "pencil") || scramMatches(v, "pencil2") || scramMatches("md5abc", "pencil") {
		t.Error("scramMatches is wrong")
	}
	if lit, _ := passwordLiteral("x'y"); !strings.HasPrefix(lit, "'SCRAM-SHA-256$") {
		t.Errorf("ASCII password literal %s", lit)
	}
	if lit, _ := passwordLiteral(`pässwörd\'`); lit != `E'pässwörd\\'''` {
		t.Errorf("non-ASCII password literal %s", lit)
	}
}

func TestLineWriterAndTail(t *testing.T) {
	var lines []string
	var crs int
	w := newLineWriter(func(l string, cr bool) {
		lines = append(lines, l)
		if cr {
			crs++
		}
	})
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r3/10 kB (30%)\rthree\n\nfour"))
	w.flush()
	if strings.Join(lines, "|") != "one|two|3/10 kB (30%)|three|four" || crs != 2 {
		t.Errorf("lines %q, %d progress lines", lines, crs)
	}
	tb := newTailBuffer(2)
	for _, l := range []string{"a", "b", "c"} {
		tb.add(l)
	}
	if tb.String() != "b\nc" {
		t.Errorf("tail %q", tb.String())
	}
}

func TestSplitPathAndWithin(t *testing.T) {
	if got := strings.Join(splitPath("/a/b/c"), ","); got != "a,b,c" {
		t.Errorf("splitPath %q", got)
	}
	if !within("/a/b/c", "/a/b") || within("/a/bc", "/a/b") || !within("/a/b", "/a/b") || within("/a", "/a/b") {
		t.Error("within is wrong")
	}
}

func TestProcStat(t *testing.T) {
	line := "1234 (postgres: my (odd) name) S 99 1234 1234 0 -1"
	if st, ok := procState(line); !ok || st != 'S' {
		t.Errorf("state %c %v", st, ok)
	}
	if pp, ok := procPPID(line); !ok || pp != 99 {
		t.Errorf("ppid %d %v", pp, ok)
	}
}
