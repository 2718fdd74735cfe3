package pgctl

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestInspectNotPostgres(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	c := newInstance(t, baseDir(t), "n1")
	if err := os.MkdirAll(filepath.Join(c.opts.DataDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"notes.txt": "precious", "sub/x": "more"}
	for n, v := range files {
		if err := os.WriteFile(filepath.Join(c.opts.DataDir, n), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.InspectDataDir(ctx)
	if st != DataDirNotPostgres || !errors.Is(err, ErrNotPostgresDataDir) ||
		!strings.Contains(err.Error(), "not a Postgres data directory") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("InspectDataDir = %v, %v", st, err)
	}
	before, _ := os.Stat(c.opts.DataDir)
	if err := c.PrepareDirs(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(c.opts.DataDir); after.Mode() != before.Mode() || !ownedBy(after, statUID(before)) {
		t.Fatalf("PrepareDirs changed a non-Postgres data directory: %v -> %v", before.Mode(), after.Mode())
	}
	if err := c.InitDB(ctx, InitOptions{}); err == nil {
		t.Fatal("InitDB accepted a non-Postgres directory")
	}
	if err := c.BaseBackup(ctx, Conninfo{"host": "127.0.0.1", "port": "1"}, "", ""); err == nil {
		t.Fatal("BaseBackup accepted a non-Postgres directory")
	}
	if err := c.Rewind(ctx, Conninfo{"host": "127.0.0.1", "port": "1"}, ""); err == nil {
		t.Fatal("Rewind accepted a non-Postgres directory")
	}
	if err := c.Start(ctx); err == nil {
		t.Fatal("Start accepted a non-Postgres directory")
	}
	for n, v := range files {
		b, err := os.ReadFile(filepath.Join(c.opts.DataDir, n))
		if err != nil || string(b) != v {
			t.Errorf("%s changed: %q %v", n, b, err)
		}
	}
	ents, _ := os.ReadDir(c.opts.DataDir)
	if len(ents) != 2 {
		t.Errorf("data dir now has %d entries", len(ents))
	}
}

func TestPrepareDirsNotTraversable(t *testing.T) {
	needPG(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := baseDir(t)
	locked := filepath.Join(base, "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := New(instanceOptions(filepath.Join(locked, "n1"), 5432, testLogger(t, "n1")))
	if err != nil {
		t.Fatal(err)
	}
	err = c.PrepareDirs(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+locked) {
		t.Fatalf("PrepareDirs below a 0700 dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(locked, "n1")); !os.IsNotExist(err) {
		t.Fatal("PrepareDirs created something although it failed")
	}

	// Once traversable, it creates everything owned by the OS user.
	if err := os.Chmod(locked, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := c.PrepareDirs(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{c.opts.DataDir, c.opts.SocketDir, c.opts.LogFile} {
		st, err := os.Stat(p)
		if err != nil || !ownedBy(st, c.id.uid) {
			t.Errorf("%s: %v, owned by the OS user: %v", p, err, err == nil && ownedBy(st, c.id.uid))
		}
	}
	if st, _ := os.Stat(c.opts.DataDir); st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %o", st.Mode().Perm())
	}
}

func TestNewErrors(t *testing.T) {
	needPG(t)
	cases := []struct {
		o    Options
		want string
	}{
		{Options{DataDir: "/x"}, "postgres.bin_dir"},
		{Options{BinDir: "/usr/bin", DataDir: "/x"}, "lacks postgres"},
		{Options{BinDir: pgBinDir}, "postgres.data_dir"},
		{Options{BinDir: pgBinDir, DataDir: "/x/d", LogFile: "/x/d/log"}, "inside the data directory"},
		{Options{BinDir: pgBinDir, DataDir: "/x/d", SocketDir: "/" + strings.Repeat("s", 100)}, "shorter postgres.socket_dir"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			o    Options
			want string
		}{Options{BinDir: pgBinDir, DataDir: "/x/d", OSUser: "no-such-user-xyz"}, "does not exist"})
	}
	for _, tc := range cases {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want it to mention %q", tc.o, err, tc.want)
		}
	}
	c, err := New(Options{BinDir: pgBinDir, DataDir: "/x/d"})
	if err != nil || c.MajorVersion() < MinMajorVersion {
		t.Fatalf("New: %v", err)
	}
}

func TestBaseBackupUnreachable(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	c := newInstance(t, baseDir(t), "n1")
	port := freePort(t)
	src := Conninfo{"host": "127.0.0.1", "port": strconv.Itoa(port), "user": "replicator", "connect_timeout": "2"}
	err := c.BaseBackup(ctx, src, "", "")
	if err == nil || !strings.Contains(err.Error(), "pg_basebackup from") || !strings.Contains(err.Error(), "127.0.0.1") ||
		!strings.Contains(err.Error(), "onnection refused") {
		t.Fatalf("BaseBackup from nowhere: %v", err)
	}
	t.Logf("error: %v", err)
	if st, _ := c.InspectDataDir(ctx); st != DataDirEmpty && st != DataDirMissing {
		t.Fatalf("data dir after a failed base backup: %v", st)
	}
	if isFile(c.markerPath()) {
		t.Fatal("a failed base backup left its marker")
	}
	if err := c.BaseBackup(ctx, src.With("password", "hunter2"), "", ""); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("BaseBackup with a password on the command line: %v", err)
	}
}

// TestIncompleteMarker: the remains of an interrupted clone are refused by
// Start and cleared by BaseBackup; a half-rewound directory is moved aside.
func TestIncompleteMarker(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	c := newInstance(t, baseDir(t), "n1")
	fromTemplate(t, c)
	unreachable := Conninfo{"host": "127.0.0.1", "port": strconv.Itoa(freePort(t)), "connect_timeout": "2"}

	if err := os.WriteFile(c.markerPath(), []byte("pg_basebackup started 2025-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := c.InspectDataDir(ctx); st != DataDirIncomplete || err != nil {
		t.Fatalf("InspectDataDir with a clone marker = %v, %v", st, err)
	}
	if err := c.Start(ctx); err == nil || !strings.Contains(err.Error(), "interrupted pg_basebackup") {
		t.Fatalf("Start on an incomplete clone: %v", err)
	}
	if err := c.BaseBackup(ctx, unreachable, "", ""); err == nil {
		t.Fatal("BaseBackup from nowhere succeeded")
	}
	if st, _ := c.InspectDataDir(ctx); st != DataDirEmpty || isFile(c.markerPath()) {
		t.Fatalf("after clearing an incomplete clone: %v, marker present %v", st, isFile(c.markerPath()))
	}

	if err := os.Remove(c.opts.DataDir); err != nil {
		t.Fatal(err)
	}
	fromTemplate(t, c)
	if err := os.WriteFile(c.markerPath(), []byte("pg_rewind started 2025-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Rewind(ctx, unreachable, ""); !errors.Is(err, ErrRewindImpossible) {
		t.Fatalf("Rewind of a half-rewound directory: %v", err)
	}
	if err := c.BaseBackup(ctx, unreachable, "", ""); err == nil {
		t.Fatal("BaseBackup from nowhere succeeded")
	}
	old, _ := filepath.Glob(c.opts.DataDir + ".old-*")
	if len(old) != 1 || !isFile(filepath.Join(old[0], "PG_VERSION")) {
		t.Fatalf("half-rewound directory not moved aside: %v", old)
	}
}
