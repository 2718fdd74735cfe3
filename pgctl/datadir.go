package pgctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DataDirState is what InspectDataDir found.
type DataDirState int

const (
	DataDirMissing     DataDirState = iota // does not exist
	DataDirEmpty                           // exists, no entries
	DataDirValid                           // has PG_VERSION and global/pg_control
	DataDirNotPostgres                     // non-empty without them (or not a directory)
	// DataDirIncomplete: the remains of an interrupted initdb, pg_basebackup
	// or pg_rewind (marker DataDir+".incomplete"). Start refuses it;
	// InitDB and BaseBackup clear it first (a half-rewound directory is
	// moved aside, the others are emptied).
	DataDirIncomplete
)

func (s DataDirState) String() string {
	switch s {
	case DataDirMissing:
		return "missing"
	case DataDirEmpty:
		return "empty"
	case DataDirValid:
		return "valid"
	case DataDirNotPostgres:
		return "not-postgres"
	case DataDirIncomplete:
		return "incomplete"
	}
	return "DataDirState(" + strconv.Itoa(int(s)) + ")"
}

// InspectDataDir looks at the data directory without changing anything. A
// non-empty directory that holds no cluster gives DataDirNotPostgres and an
// error wrapping ErrNotPostgresDataDir; the remains of an interrupted
// initdb / pg_basebackup / pg_rewind give DataDirIncomplete (no error).
func (c *Controller) InspectDataDir(ctx context.Context) (DataDirState, error) {
	if err := ctx.Err(); err != nil {
		return DataDirMissing, err
	}
	dir := c.opts.DataDir
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return DataDirMissing, nil
	}
	if err != nil {
		return DataDirMissing, fmt.Errorf("inspecting data directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return DataDirNotPostgres, fmt.Errorf("data directory %s is a file, %w; nothing was changed: set postgres.data_dir to a directory", dir, ErrNotPostgresDataDir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return DataDirMissing, fmt.Errorf("reading data directory %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return DataDirEmpty, nil
	}
	if op := c.incompleteOp(); op != "" {
		return DataDirIncomplete, nil
	}
	if isFile(filepath.Join(dir, "PG_VERSION")) && isFile(filepath.Join(dir, "global", "pg_control")) {
		return DataDirValid, nil
	}
	return DataDirNotPostgres, fmt.Errorf("data directory %s is not empty and is %w (no PG_VERSION and global/pg_control; %d entries, e.g. %q); nothing was changed: move its contents away or set postgres.data_dir to another directory",
		dir, ErrNotPostgresDataDir, len(entries), entries[0].Name())
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// PrepareDirs creates the data directory (0700), the socket directory and
// the log file, owned by the OS user. It first checks that the OS user can
// traverse every existing parent directory and changes nothing if not.
func (c *Controller) PrepareDirs(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range []string{c.opts.DataDir, c.opts.SocketDir, c.opts.LogFile} {
		if err := c.checkTraversable(filepath.Dir(p)); err != nil {
			return err
		}
	}
	if err := c.ensureDataDir(); err != nil {
		return err
	}
	if err := c.ensureSocketDir(); err != nil {
		return err
	}
	return c.ensureLogFile()
}

// checkTraversable verifies the OS user may search every existing directory
// from / down to dir.
func (c *Controller) checkTraversable(dir string) error {
	p := "/"
	for _, part := range splitPath(dir) {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // created later with mode 0755
		}
		if err != nil {
			return fmt.Errorf("checking %s: %w", p, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
		if !c.id.may(st, 1) {
			return fmt.Errorf("OS user %q cannot traverse directory %s (mode %04o, owner uid %d): Postgres needs to reach paths below it; run `chmod o+x %s` (or give %q group access)",
				c.id.name, p, st.Mode().Perm(), statUID(st), p, c.id.name)
		}
		p = filepath.Join(p, part)
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() && !c.id.may(st, 1) {
		return fmt.Errorf("OS user %q cannot traverse directory %s (mode %04o): run `chmod o+x %s`", c.id.name, p, st.Mode().Perm(), p)
	}
	return nil
}

func splitPath(p string) []string {
	var parts []string
	for p = filepath.Clean(p); p != "/" && p != "."; p = filepath.Dir(p) {
		parts = append([]string{filepath.Base(p)}, parts...)
	}
	return parts
}

// may reports whether the identity has permission bit (1 x, 2 w, 4 r) on st
// by the classic owner/group/other rule (ACLs are not considered).
func (id osIdentity) may(st os.FileInfo, bit os.FileMode) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	uid := id.uid
	if !id.asRoot {
		uid = os.Geteuid()
		if uid == 0 {
			return true
		}
	}
	m := st.Mode().Perm()
	if int(s.Uid) == uid {
		return m&(bit<<6) != 0
	}
	inGroup := int(s.Gid) == id.gid
	for _, g := range id.groups {
		inGroup = inGroup || g == s.Gid
	}
	if inGroup {
		return m&(bit<<3) != 0
	}
	return m&bit != 0
}

func statUID(st os.FileInfo) int {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(s.Uid)
	}
	return -1
}

// ensureDataDir creates DataDir 0700 owned by the OS user. An existing empty
// directory gets its owner and mode fixed; a cluster gets its mode fixed
// (Postgres wants 0700 or 0750); a non-empty directory that is not a cluster
// is left untouched (InspectDataDir reports it).
func (c *Controller) ensureDataDir() error {
	dir := c.opts.DataDir
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("creating parent of data directory: %w", err)
	}
	err := os.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating data directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return nil // InspectDataDir reports it
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading data directory %s: %w", dir, err)
	}
	cluster := isFile(filepath.Join(dir, "PG_VERSION"))
	if len(entries) > 0 && !cluster {
		return nil
	}
	if !ownedBy(st, c.id.uid) {
		if len(entries) > 0 {
			return fmt.Errorf("data directory %s is owned by uid %d, not by %q; nothing was changed: run `chown -R %s: %s` if it is yours", dir, statUID(st), c.id.name, c.id.name, dir)
		}
		if err := c.chown(dir); err != nil {
			return err
		}
	}
	if p := st.Mode().Perm(); p != 0o700 && p != 0o750 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("chmod 0700 %s: %w", dir, err)
		}
	}
	return nil
}

func (c *Controller) ensureSocketDir() error {
	dir := c.opts.SocketDir
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("chmod socket directory: %w", err)
		}
		return c.chown(dir)
	}
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory: set postgres.socket_dir", dir)
	}
	if !c.id.may(st, 2) || !c.id.may(st, 1) {
		if st.Mode()&os.ModeSticky == 0 && c.id.asRoot {
			return c.chown(dir)
		}
		return fmt.Errorf("OS user %q cannot create its socket in %s (mode %04o, owner uid %d): run `chown %s %s`", c.id.name, dir, st.Mode().Perm(), statUID(st), c.id.name, dir)
	}
	return nil
}

func (c *Controller) ensureLogFile() error {
	if err := os.MkdirAll(filepath.Dir(c.opts.LogFile), 0o755); err != nil {
		return fmt.Errorf("creating log directory: %w", err)
	}
	f, err := os.OpenFile(c.opts.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("creating log file: %w", err)
	}
	f.Close()
	return c.chown(c.opts.LogFile)
}

// InitOptions tune InitDB.
type InitOptions struct {
	NoSync    bool     // initdb --no-sync (tests)
	ExtraArgs []string // appended to the initdb command line
}

// InitDB creates a new cluster in the (missing or empty) data directory:
// initdb --data-checksums -E UTF8 --locale=C.UTF-8 -U <superuser>
// --auth-local=peer --auth-host=scram-sha-256. It refuses a non-empty
// directory. Call WriteHBA afterwards so this process may connect.
func (c *Controller) InitDB(ctx context.Context, o InitOptions) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.refuseRunning("initdb"); err != nil {
		return err
	}
	state, err := c.InspectDataDir(ctx)
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	switch state {
	case DataDirMissing, DataDirEmpty:
	case DataDirIncomplete:
		if err := c.discardIncomplete(); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
	default:
		return fmt.Errorf("initdb: refusing: %s already holds a %s data directory (%w); nothing was changed", c.opts.DataDir, state, ErrDataDirNotEmpty)
	}
	if err := c.PrepareDirs(ctx); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if err := c.markIncomplete("initdb"); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	args := []string{"-D", c.opts.DataDir, "--data-checksums", "-E", "UTF8", "--locale=C.UTF-8",
		"-U", c.opts.Superuser, "--auth-local=peer", "--auth-host=scram-sha-256", "--no-instructions"}
	if o.NoSync {
		args = append(args, "--no-sync")
	}
	args = append(args, o.ExtraArgs...)
	start := time.Now()
	if _, err := c.run(ctx, runSpec{name: "initdb", args: args}); err != nil {
		c.emptyDataDir()
		c.clearIncomplete()
		return fmt.Errorf("initdb in %s: %w", c.opts.DataDir, err)
	}
	c.clearIncomplete()
	c.log.Info("initdb done", "data_dir", c.opts.DataDir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// emptyDataDir removes everything inside DataDir (used only after a failed
// initdb / pg_basebackup into a directory we checked was empty).
func (c *Controller) emptyDataDir() {
	entries, err := os.ReadDir(c.opts.DataDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(c.opts.DataDir, e.Name())); err != nil {
			c.log.Warn("cleaning up data directory", "error", err)
		}
	}
}

// IsStandbySignal reports whether DataDir/standby.signal exists.
func (c *Controller) IsStandbySignal() bool {
	_, err := os.Stat(filepath.Join(c.opts.DataDir, "standby.signal"))
	return err == nil
}

// SetStandbySignal creates or removes DataDir/standby.signal.
func (c *Controller) SetStandbySignal(on bool) (changed bool, err error) {
	p := filepath.Join(c.opts.DataDir, "standby.signal")
	if on == c.IsStandbySignal() {
		return false, nil
	}
	if !on {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("removing standby.signal: %w", err)
		}
		return true, nil
	}
	if _, err := os.Stat(c.opts.DataDir); err != nil {
		return false, fmt.Errorf("creating standby.signal: data directory: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return false, fmt.Errorf("creating standby.signal: %w", err)
	}
	f.Close()
	return true, c.chown(p)
}

// SetAside is what moving a data directory aside did.
type SetAside struct {
	Path    string   // where the data directory went; "" when there was none
	Removed []string // older set-aside copies deleted (at most one is kept)
}

// RemoveDataDir moves the data directory aside to DataDir.old-<unix time>
// so that a re-clone can start from an empty one, and deletes the older
// set-aside copies: at most one is kept, the newest, for diagnosis. Refuses
// while Postgres runs. A missing directory is not an error.
func (c *Controller) RemoveDataDir(ctx context.Context) (SetAside, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := ctx.Err(); err != nil {
		return SetAside{}, err
	}
	if err := c.refuseRunning("moving the data directory aside"); err != nil {
		return SetAside{}, err
	}
	if _, err := os.Lstat(c.opts.DataDir); errors.Is(err, fs.ErrNotExist) {
		c.clearIncomplete()
		return SetAside{}, nil
	}
	sa, err := c.moveAside()
	if err != nil {
		return sa, err
	}
	c.clearIncomplete()
	c.log.Warn("moved data directory aside (delete it when no longer needed)", "from", c.opts.DataDir, "to", sa.Path, "removed_older", sa.Removed)
	return sa, nil
}

// SetAsideCopies lists the set-aside copies of dataDir (dataDir.old-<unix
// time>[-n] directories), oldest first.
func SetAsideCopies(dataDir string) ([]string, error) {
	dataDir = filepath.Clean(dataDir)
	entries, err := os.ReadDir(filepath.Dir(dataDir))
	if err != nil {
		return nil, fmt.Errorf("listing set-aside copies of %s: %w", dataDir, err)
	}
	base := filepath.Base(dataDir)
	type copyKey struct{ ts, n int64 }
	keys := map[string]copyKey{}
	var out []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), base)
		m := setAsideRE.FindStringSubmatch(rest)
		if !ok || m == nil || !e.IsDir() {
			continue
		}
		p := filepath.Join(filepath.Dir(dataDir), e.Name())
		ts, _ := strconv.ParseInt(m[1], 10, 64)
		n, _ := strconv.ParseInt(m[2], 10, 64)
		keys[p] = copyKey{ts, n}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := keys[out[i]], keys[out[j]]
		return a.ts < b.ts || (a.ts == b.ts && a.n < b.n)
	})
	return out, nil
}

var setAsideRE = regexp.MustCompile(`^\.old-([0-9]+)(?:-([0-9]+))?$`)

// moveAside renames DataDir to DataDir.old-<unix time>[-n], then deletes
// every older set-aside copy (a failure to delete one is logged, not
// returned: the data directory is aside either way).
func (c *Controller) moveAside() (SetAside, error) {
	base := c.opts.DataDir + ".old-" + strconv.FormatInt(time.Now().Unix(), 10)
	dst := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = base + "-" + strconv.Itoa(i)
	}
	if err := os.Rename(c.opts.DataDir, dst); err != nil {
		return SetAside{}, fmt.Errorf("moving data directory aside: %w", err)
	}
	sa := SetAside{Path: dst}
	older, err := SetAsideCopies(c.opts.DataDir)
	if err != nil {
		c.log.Warn("cannot list older set-aside copies", "error", err)
	}
	for _, o := range older {
		if o == dst {
			continue
		}
		if err := os.RemoveAll(o); err != nil {
			c.log.Warn("cannot delete an older set-aside copy", "path", o, "error", err)
			continue
		}
		sa.Removed = append(sa.Removed, o)
	}
	return sa, nil
}
