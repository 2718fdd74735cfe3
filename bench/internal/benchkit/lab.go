package benchkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/lab"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// LabOptions describe a benchmark lab.
type LabOptions struct {
	// Binary is the hasidecar executable (made absolute here).
	Binary   string
	Standbys int
	Witness  bool
	Tune     func(*config.Config)
	// Keep leaves the directory of a lab marked failed in place.
	Keep bool
	// UpTimeout bounds the wait until the new lab is healthy (default 3 min).
	UpTimeout time.Duration
	// Attempts is how many fresh labs to try before giving up when one does
	// not become healthy (default 1). Every failed start is reported with
	// the tail of its logs.
	Attempts int
	// Netns gives every node a network namespace of its own (lab.Net:
	// needs root, iproute2 and nftables); the bench's clients connect from
	// the lab's client namespace. Without it, everything is on loopback.
	Netns bool
}

// Env is a running lab in its own temporary directory.
type Env struct {
	Lab *lab.Lab
	// Dir is the temporary directory that holds the lab (Lab.Spec.Dir is
	// inside it).
	Dir string

	// StartFailures are the errors of the labs that did not come up before
	// this one (see LabOptions.Attempts).
	StartFailures []string

	keep   bool
	mu     sync.Mutex
	failed bool
	once   sync.Once
}

// AbsBinary checks that the hasidecar binary exists and returns its
// absolute path.
func AbsBinary(path string) (string, error) {
	if path == "" {
		return "", errors.New("say which hasidecar binary to run: -bin PATH (build it with `make build`)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve -bin %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("-bin %s: %w (build it with `make build`)", path, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("-bin %s is not an executable file", abs)
	}
	return abs, nil
}

// StartLab lays out a lab on a free port block in a fresh temporary
// directory, starts every node and waits until the cluster is healthy,
// trying up to o.Attempts fresh labs. A lab is torn down by Close, by Main
// when the program ends, or here when it does not come up.
func StartLab(ctx context.Context, o LabOptions) (*Env, error) {
	var failures []string
	for attempt := 1; ; attempt++ {
		e, err := startLab(ctx, o)
		if err == nil {
			e.StartFailures = failures
			return e, nil
		}
		failures = append(failures, err.Error())
		if ctx.Err() != nil || attempt >= max(o.Attempts, 1) {
			if len(failures) > 1 {
				return nil, fmt.Errorf("%d lab starts failed, the last: %w", len(failures), err)
			}
			return nil, err
		}
		Logf("WARNING: the lab did not come up (attempt %d of %d): %v; trying a fresh lab", attempt, max(o.Attempts, 1), err)
	}
}

func startLab(ctx context.Context, o LabOptions) (*Env, error) {
	bin, err := AbsBinary(o.Binary)
	if err != nil {
		return nil, err
	}
	if o.UpTimeout == 0 {
		o.UpTimeout = 3 * time.Minute
	}
	dir, err := os.MkdirTemp("", "hasidecar-bench-")
	if err != nil {
		return nil, fmt.Errorf("create a temporary directory for the lab: %w", err)
	}
	// The postgres OS user must traverse every parent of its data directory;
	// the temporary directory root itself (/tmp) is left as it is.
	for d := dir; d != "/" && d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	base, err := FreeBase()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	spec := lab.Spec{Dir: filepath.Join(dir, "lab"), Standbys: o.Standbys, Witness: o.Witness,
		BasePort: base, Binary: bin, Tune: o.Tune}
	if o.Netns {
		if spec.Net, err = lab.NewNet(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("network namespaces for the lab: %w", err)
		}
	}
	l, err := lab.New(spec) // on error, it has removed the namespaces it made
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("lay out the lab: %w", err)
	}
	e := &Env{Lab: l, Dir: dir, keep: o.Keep}
	register(e)
	upCtx, cancel := context.WithTimeout(ctx, o.UpTimeout)
	defer cancel()
	start := time.Now()
	if _, err := l.Up(upCtx); err != nil {
		e.MarkFailed()
		if ctx.Err() == nil {
			e.DumpLogs(25)
		}
		e.Close()
		return nil, fmt.Errorf("start the lab (base port %d): %w", base, err)
	}
	Logf("lab healthy after %s in %s (base port %d)", time.Since(start).Round(100*time.Millisecond), l.Spec.Dir, base)
	return e, nil
}

// MarkFailed makes Close keep the lab directory when Keep was asked for.
func (e *Env) MarkFailed() {
	e.mu.Lock()
	e.failed = true
	e.mu.Unlock()
}

// Close stops every process of the lab (SIGTERM, then SIGKILL), kills any
// straggler still living in its directory, and removes the directory unless
// the lab failed and Keep was asked for. It is safe to call more than once
// and from several goroutines.
func (e *Env) Close() {
	e.once.Do(func() {
		defer unregister(e)
		if err := e.Lab.Down(15 * time.Second); err != nil {
			Logf("teardown: %v", err)
		}
		if left := killLeftovers(e.Dir); len(left) > 0 {
			Logf("teardown: killed %d process(es) of the lab still running after the lab was stopped: %s", len(left), strings.Join(left, "; "))
		}
		if e.Lab.Spec.Net != nil {
			if err := e.Lab.Spec.Net.Teardown(); err != nil {
				Logf("teardown: network namespaces: %v", err)
			}
		}
		e.mu.Lock()
		keep := e.failed && e.keep
		e.mu.Unlock()
		if keep {
			Logf("kept the failed lab for inspection: %s (logs: */hasidecar.log, */postgres.log)", e.Lab.Spec.Dir)
			return
		}
		if err := os.RemoveAll(e.Dir); err != nil {
			Logf("teardown: remove %s: %v", e.Dir, err)
		}
	})
}

// killLeftovers SIGKILLs every process whose command line names dir or whose
// working directory lies in it (Postgres backends run in their data
// directory), and describes them.
func killLeftovers(dir string) []string {
	find := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, ent := range ents {
			pid, err := strconv.Atoi(ent.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmd, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
			cwd, _ := os.Readlink(filepath.Join("/proc", ent.Name(), "cwd"))
			if strings.Contains(string(cmd), dir) || cwd == dir || strings.HasPrefix(cwd, dir+"/") {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	var out []string
	for _, pid := range find() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); len(find()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return out
}

// FreeBase finds a free block of lab ports (see lab.FreeBase).
func FreeBase() (int, error) { return lab.FreeBase() }

// Show asks the running members for cluster show (bounded by ctx and a
// per-member timeout).
func (e *Env) Show(ctx context.Context) (*pb.ShowResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := e.Lab.Show(cctx)
	if err != nil {
		return nil, fmt.Errorf("cluster show: %w", err)
	}
	return v, nil
}

// WaitHealthy waits (at most timeout) until every member runs, one primary,
// every standby streaming.
func (e *Env) WaitHealthy(ctx context.Context, timeout time.Duration) (*pb.ShowResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return e.Lab.WaitHealthy(cctx)
}

// Primary is the data node the view names primary, or nil.
func (e *Env) Primary(v *pb.ShowResponse) *lab.Node {
	for _, n := range v.Nodes {
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			return e.Lab.Node(n.Name)
		}
	}
	return nil
}

// Standbys are the data nodes other than the view's primary, by name.
func (e *Env) Standbys(v *pb.ShowResponse) []*lab.Node {
	p := e.Primary(v)
	var out []*lab.Node
	for _, n := range e.Lab.DataNodes() {
		if n != p {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NodeByPort is the data node whose Postgres listens on port, or nil.
func (e *Env) NodeByPort(port int) *lab.Node {
	for _, n := range e.Lab.DataNodes() {
		if n.PGPort == port {
			return n
		}
	}
	return nil
}

// NameByPort is the name of the node on port, or the port itself.
func (e *Env) NameByPort(port int) string {
	if n := e.NodeByPort(port); n != nil {
		return n.Name
	}
	return "port " + strconv.Itoa(port)
}

// DSN connects to one node's Postgres directly (from the client namespace
// when the lab has namespaces: see Connect).
func DSN(n *lab.Node) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=2 sslmode=disable", n.Host, n.PGPort)
}

// Connect opens a pgx connection with a libpq string, dialling from the
// lab's client namespace when it has namespaces.
func (e *Env) Connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := e.ConnConfig(dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// ConnConfig parses a libpq string and, when the lab has namespaces, makes
// every host of it dial from the client namespace.
func (e *Env) ConnConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", dsn, err)
	}
	if nw := e.Lab.Spec.Net; nw != nil {
		cfg.DialFunc = nw.DialContext // for every host of a multi-host string
	}
	return cfg, nil
}

// Command runs argv where the bench's clients run: in the lab's client
// namespace when it has namespaces, else on this host.
func (e *Env) Command(ctx context.Context, argv ...string) *exec.Cmd {
	if nw := e.Lab.Spec.Net; nw != nil {
		argv = append([]string{"ip", "netns", "exec", nw.Namespace("client")}, argv...)
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// ExecOn runs one statement on a node's Postgres.
func (e *Env) ExecOn(ctx context.Context, n *lab.Node, sql string) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := e.Connect(cctx, DSN(n))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	defer closeConn(conn)
	if _, err := conn.Exec(cctx, sql); err != nil {
		return fmt.Errorf("%s on %s: %w", sql, n.Name, err)
	}
	return nil
}

// StartWriting reads cluster show, creates the bench table on the primary
// and starts a writer (wo: its rate and time-outs) through the lab's
// multi-host string. It returns the view it read and the primary.
func (e *Env) StartWriting(ctx context.Context, dsnExtra string, wo WriterOptions) (*pb.ShowResponse, *lab.Node, *Writer, error) {
	v, err := e.Show(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	p := e.Primary(v)
	if p == nil {
		return nil, nil, nil, errors.New("cluster show names no primary")
	}
	if err := e.ExecOn(ctx, p, CreateTableSQL); err != nil {
		return nil, nil, nil, fmt.Errorf("create the table: %w", err)
	}
	cfg, err := e.ConnConfig(e.Lab.MultiHostDSN(dsnExtra))
	if err != nil {
		return nil, nil, nil, err
	}
	wo.Config = cfg
	w := StartWriter(ctx, wo)
	return v, p, w, nil
}

// MissingWrites reads every row id of the bench table on node n and
// counts the acknowledged writes (samples) it lacks: an acknowledged
// INSERT lost by a switchover or failover. It answers the number checked
// and the missing ids, in the writer's order.
func (e *Env) MissingWrites(ctx context.Context, n *lab.Node, samples []Sample) (checked int, missing []int64, err error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := e.Connect(cctx, DSN(n))
	if err != nil {
		return 0, nil, fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	defer closeConn(conn)
	rows, err := conn.Query(cctx, "SELECT id FROM "+TableName)
	if err != nil {
		return 0, nil, fmt.Errorf("read %s on %s: %w", TableName, n.Name, err)
	}
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, nil, fmt.Errorf("read %s on %s: %w", TableName, n.Name, err)
		}
		have[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("read %s on %s: %w", TableName, n.Name, err)
	}
	for _, s := range samples {
		if !have[s.ID] {
			missing = append(missing, s.ID)
		}
	}
	return len(samples), missing, nil
}
