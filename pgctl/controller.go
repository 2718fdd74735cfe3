package pgctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
)

// Errors callers can test for with errors.Is.
var (
	// ErrForeignPostmaster: a postmaster this Controller did not start runs
	// on the data directory.
	ErrForeignPostmaster = errors.New("a postmaster this controller did not start is running on this data directory")
	// ErrPortInUse: the TCP port or unix socket is taken by another process.
	ErrPortInUse = errors.New("port already in use")
	// ErrNotRunning: the operation needs a running Postgres.
	ErrNotRunning = errors.New("postgres is not running")
	// ErrRunning: the operation needs Postgres stopped.
	ErrRunning = errors.New("postgres is running")
	// ErrRewindImpossible: pg_rewind cannot bring this data directory in
	// line with the source; the caller should re-clone.
	ErrRewindImpossible = errors.New("pg_rewind cannot rewind this data directory")
	// ErrSameTimeline (with ErrRewindImpossible): pg_rewind found the
	// target on the source's timeline and changed nothing.
	ErrSameTimeline = errors.New("already on the source's timeline")
	// ErrNotPostgresDataDir: the data directory is non-empty but holds no
	// Postgres cluster.
	ErrNotPostgresDataDir = errors.New("not a Postgres data directory")
	// ErrDataDirNotEmpty: initdb / pg_basebackup refuse a non-empty directory.
	ErrDataDirNotEmpty = errors.New("data directory is not empty")
	// ErrStartTimeout: Postgres did not accept connections within
	// StartTimeout. The postmaster is left running (a standby may still be
	// catching up to a consistent state); call Stop to give up.
	ErrStartTimeout = errors.New("postgres did not accept connections in time")
)

// MinMajorVersion is the oldest Postgres major version pgctl supports.
const MinMajorVersion = 15

// Options configure a Controller. Zero values get the defaults noted.
type Options struct {
	BinDir          string // e.g. /usr/lib/postgresql/15/bin (required)
	DataDir         string // required, absolute
	Port            int    // default 5432
	ListenAddresses string // listen_addresses; default "localhost"
	// SocketDir is unix_socket_directories; created and owned by OSUser.
	// Default: <parent of DataDir>/run.
	SocketDir string
	// OSUser runs every binary when euid==0 (default "postgres"); when not
	// root, binaries run as the current user and OSUser is ignored.
	OSUser string
	// Superuser is the database superuser name (initdb -U), default "postgres".
	Superuser string
	// LogFile receives the server's stderr (appended); created and owned by
	// OSUser. Default: <parent of DataDir>/postgres.log. Must not be inside DataDir.
	LogFile string
	Logger  hclog.Logger
	// StopTimeout: a fast stop escalates to immediate after this (default 30s).
	StopTimeout time.Duration
	// StartTimeout bounds the wait for a new postmaster to accept
	// connections (default 60s).
	StartTimeout time.Duration
	// WALKeepSize is wal_keep_size in bytes for ManagedSettings (default 512 MiB).
	WALKeepSize uint64
	// SurviveExit: the postmaster outlives this process (no parent-death
	// signal), so that the next sidecar can adopt it (Adopt); a guard
	// process must then watch it (guard.go). False: Postgres dies with
	// this process.
	SurviveExit bool
}

// withDefaults fills in zero fields (no validation).
func (o Options) withDefaults() Options {
	parent := filepath.Dir(o.DataDir)
	if o.SocketDir == "" {
		o.SocketDir = filepath.Join(parent, "run")
	}
	if o.LogFile == "" {
		o.LogFile = filepath.Join(parent, "postgres.log")
	}
	if o.Port == 0 {
		o.Port = 5432
	}
	if o.ListenAddresses == "" {
		o.ListenAddresses = "localhost"
	}
	if o.OSUser == "" {
		o.OSUser = "postgres"
	}
	if o.Superuser == "" {
		o.Superuser = "postgres"
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.WALKeepSize == 0 {
		o.WALKeepSize = 512 << 20
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o
}

// Controller drives one Postgres instance. Its methods are safe for
// concurrent use.
type Controller struct {
	opts Options
	log  hclog.Logger
	id   osIdentity

	opMu    sync.Mutex // serializes Start's spawn phase and data-dir operations
	spawnMu sync.Mutex // held while a postmaster is forked and registered

	mu    sync.Mutex
	child *child // the current (or last) postmaster we started

	connMu  sync.Mutex
	conn    *pgx.Conn // cached; taken out while in use
	connGen uint64    // bumped when the cache is invalidated

	version int // major version of the binaries

	tliMu    sync.Mutex
	tliCache replayTLI // the last IDENTIFY_SYSTEM answer (Status)
}

// replayTLI is a standby's replay timeline as IDENTIFY_SYSTEM gave it, with
// what identifies the moment: while the same postmaster has replayed and
// received nothing more, the timeline cannot have changed.
type replayTLI struct {
	postmasterStart    time.Time
	replayLSN, recvLSN uint64
	tli                uint32
}

var requiredBinaries = []string{"postgres", "pg_ctl", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"}

// maxSocketPath: sun_path is 108 bytes including the NUL.
const maxSocketPath = 107

// New validates opts, fills in defaults, checks the binaries and resolves
// the OS user. It touches no file.
func New(opts Options) (*Controller, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.BinDir == "" {
		return nil, errors.New("pgctl: no Postgres bin directory: set postgres.bin_dir (Options.BinDir), e.g. /usr/lib/postgresql/15/bin")
	}
	if opts.DataDir == "" {
		return nil, errors.New("pgctl: no data directory: set postgres.data_dir (Options.DataDir)")
	}
	var err error
	for _, p := range []*string{&opts.BinDir, &opts.DataDir, &opts.SocketDir, &opts.LogFile} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("pgctl: %w", err)
		}
	}
	opts = opts.withDefaults()
	if opts.Port < 1 || opts.Port > 65535 {
		return nil, fmt.Errorf("pgctl: postgres.port %d is out of range 1-65535", opts.Port)
	}
	if within(opts.LogFile, opts.DataDir) {
		return nil, fmt.Errorf("pgctl: log file %s is inside the data directory %s: set postgres.log_file to a path outside it (pg_basebackup and pg_rewind replace the data directory)", opts.LogFile, opts.DataDir)
	}
	sock := filepath.Join(opts.SocketDir, ".s.PGSQL."+strconv.Itoa(opts.Port))
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("pgctl: unix socket path %s is %d bytes, longer than the %d the kernel allows: set a shorter postgres.socket_dir", sock, len(sock), maxSocketPath)
	}

	var missing []string
	for _, b := range requiredBinaries {
		st, err := os.Stat(filepath.Join(opts.BinDir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("pgctl: %s lacks %s: set postgres.bin_dir to the directory of the PostgreSQL %d+ server binaries (e.g. /usr/lib/postgresql/15/bin; on Debian install the postgresql-15 package)",
			opts.BinDir, strings.Join(missing, ", "), MinMajorVersion)
	}
	id, err := resolveIdentity(opts.OSUser)
	if err != nil {
		return nil, err
	}
	c := &Controller{opts: opts, log: opts.Logger, id: id}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if c.version, err = c.serverVersion(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Options returns the effective options (defaults filled in).
func (c *Controller) Options() Options { return c.opts }

// MajorVersion is the major version of the Postgres binaries (e.g. 15).
func (c *Controller) MajorVersion() int { return c.version }

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

func (c *Controller) serverVersion(ctx context.Context) (int, error) {
	res, err := c.run(ctx, runSpec{name: "postgres", args: []string{"--version"}, quiet: true})
	if err != nil {
		return 0, fmt.Errorf("pgctl: checking %s --version: %w", c.bin("postgres"), err)
	}
	m := versionRE.FindStringSubmatch(res.stdout)
	if m == nil {
		return 0, fmt.Errorf("pgctl: cannot parse the output of %s --version: %q", c.bin("postgres"), strings.TrimSpace(res.stdout))
	}
	major, _ := strconv.Atoi(m[1])
	if major < MinMajorVersion {
		return 0, fmt.Errorf("pgctl: %s is PostgreSQL %d; hasidecar needs %d or newer: point postgres.bin_dir at a newer installation", c.bin("postgres"), major, MinMajorVersion)
	}
	return major, nil
}

func (c *Controller) bin(name string) string { return filepath.Join(c.opts.BinDir, name) }

// osIdentity is who subprocesses run as.
type osIdentity struct {
	asRoot bool // we are root and switch to uid/gid
	name   string
	uid    int
	gid    int
	groups []uint32
	home   string
}

func resolveIdentity(osUser string) (osIdentity, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return osIdentity{}, fmt.Errorf("pgctl: looking up the current user: %w", err)
		}
		return osIdentity{name: u.Username, uid: os.Geteuid(), gid: os.Getegid(), home: u.HomeDir}, nil
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		return osIdentity{}, fmt.Errorf("pgctl: running as root, Postgres must run as an unprivileged OS user, but user %q does not exist: create it (useradd --system postgres) or set postgres.os_user", osUser)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return osIdentity{}, fmt.Errorf("pgctl: postgres.os_user %q is root; Postgres refuses to run as root: choose an unprivileged user", osUser)
	}
	id := osIdentity{asRoot: true, name: u.Username, uid: uid, gid: gid, home: u.HomeDir}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.Atoi(g); err == nil {
				id.groups = append(id.groups, uint32(n))
			}
		}
	}
	return id, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")))
}
