package pgctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"
)

// SQLStateDiskFull is Postgres's disk_full error code.
const SQLStateDiskFull = "53100"

// FSSpace is the space of one filesystem as statfs reports it: Free is what
// an unprivileged writer (the postgres user) may still use (f_bavail).
type FSSpace struct {
	Free, Total uint64
}

// DiskSpace is the space of the filesystems Postgres writes to: the data
// directory's, and pg_wal's when pg_wal is on another filesystem (a
// symbolic link to a separate mount, or a mount on data_dir/pg_wal).
type DiskSpace struct {
	Data FSSpace
	// WAL is set only when pg_wal is a separate filesystem (SeparateWAL).
	WAL         FSSpace
	SeparateWAL bool
}

// StatFS measures the filesystem holding path (one statfs call).
func StatFS(path string) (FSSpace, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return FSSpace{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(s.Bsize)
	return FSSpace{Free: s.Bavail * bs, Total: s.Blocks * bs}, nil
}

// DiskSpace measures the data directory's filesystem and, when pg_wal
// lives on another one, pg_wal's. A data directory that does not exist yet
// is measured at its nearest existing parent (where initdb or a clone will
// write).
func (c *Controller) DiskSpace() (DiskSpace, error) {
	return diskSpace(c.opts.DataDir)
}

func diskSpace(dataDir string) (DiskSpace, error) {
	var ds DiskSpace
	dir := existingAncestor(dataDir)
	data, err := StatFS(dir)
	if err != nil {
		return ds, fmt.Errorf("data directory's filesystem: %w", err)
	}
	ds.Data = data
	wal := filepath.Join(dataDir, "pg_wal")
	var dst, wst unix.Stat_t
	if unix.Stat(wal, &wst) != nil || unix.Stat(dir, &dst) != nil || wst.Dev == dst.Dev {
		return ds, nil // no pg_wal yet, or on the same filesystem
	}
	w, err := StatFS(wal)
	if err != nil {
		return ds, fmt.Errorf("pg_wal's filesystem: %w", err)
	}
	ds.WAL, ds.SeparateWAL = w, true
	return ds, nil
}

// existingAncestor returns dir, or its nearest parent that exists.
func existingAncestor(dir string) string {
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// IsDiskFull reports whether err says the disk is full: Postgres's
// SQLSTATE 53100 (disk_full), ENOSPC, or "No space left on device" in the
// text (a server error relayed as a message, a tool's output).
func IsDiskFull(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == SQLStateDiskFull {
		return true
	}
	if errors.Is(err, unix.ENOSPC) {
		return true
	}
	return strings.Contains(strings.ToLower(err.Error()), "no space left on device")
}
