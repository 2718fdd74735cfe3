package pgctl

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"
)

func TestIsDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"sqlstate 53100", fmt.Errorf("health query: %w", &pgconn.PgError{Code: "53100", Message: "could not extend file"}), true},
		{"another sqlstate", &pgconn.PgError{Code: "57P01", Message: "terminating connection"}, false},
		{"ENOSPC", fmt.Errorf("writing: %w", unix.ENOSPC), true},
		{"text", errors.New(`could not write to file "pg_wal/xlogtemp.123": No space left on device`), true},
		{"other", errors.New("connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsDiskFull(tc.err); got != tc.want {
				t.Errorf("IsDiskFull(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestDiskSpace(t *testing.T) {
	dir := t.TempDir()
	ds, err := diskSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Data.Total == 0 || ds.Data.Free > ds.Data.Total || ds.SeparateWAL {
		t.Errorf("diskSpace(%s) = %+v: want total > 0, free <= total, no separate pg_wal", dir, ds)
	}
	// Not there yet: measured at the parent.
	missing, err := diskSpace(filepath.Join(dir, "not", "yet"))
	if err != nil || missing.Data.Total != ds.Data.Total {
		t.Errorf("diskSpace of a missing directory = %+v, %v; want the parent's total %d", missing, err, ds.Data.Total)
	}
}

func TestDiskSpaceSeparateWAL(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	wal := filepath.Join(dir, "pg_wal")
	if err := os.Mkdir(wal, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", wal).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = unix.Unmount(wal, unix.MNT_DETACH) })
	ds, err := diskSpace(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ds.SeparateWAL || ds.WAL.Total != 8<<20 || ds.WAL.Free != 8<<20 {
		t.Errorf("diskSpace = %+v: want a separate pg_wal of 8MB, all free", ds)
	}
	if ds.Data.Total == ds.WAL.Total {
		t.Errorf("data filesystem measured as pg_wal's: %+v", ds)
	}
}
