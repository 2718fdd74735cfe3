// Package node is the sidecar process: Raft wiring, the gRPC services, the
// local reconciler that makes Postgres match the FSM, the leader's decision
// loop, lease keeping and fencing, and the HTTP health and metrics endpoints.
//
// Side effects happen here and only after a decision has been committed and
// observed through the FSM (package fsm decides, package node acts, package
// pgctl touches Postgres).
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/clusterconf"
	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/history"
	"github.com/hasidecar/hasidecar/internal/pki"
	"github.com/hasidecar/hasidecar/internal/statelock"
	"github.com/hasidecar/hasidecar/node/keeper"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Version is set at build time (-ldflags "-X .../node.Version=...").
var Version = "dev"

// Node is one sidecar.
type Node struct {
	// cfg is the configuration the sidecar started with: never written
	// after New. The keys SIGHUP reloads are read through conf() (live).
	cfg    *config.Config
	live   atomic.Pointer[config.Config]
	logger hclog.Logger
	// loopAt: when the monitor loop (reportLoop) last ran, unix nanos
	// (the HTTP API's /liveness).
	loopAt atomic.Int64
	// history: this sidecar's own monitoring history (history.go).
	history *history.Store
	// exitCh closes when the sidecar must end as on SIGTERM (leave.go).
	exitCh   chan struct{}
	exitOnce sync.Once
	tls      *pki.Store // nil: tls.mode off (loopback only)

	fsm     *raftFSM
	raft    *raft.Raft
	rparts  *raftParts
	peers   *peerPool
	grpc    *grpc.Server
	http    *http.Server
	reports *reportStore
	metrics *metrics
	pg      *keeper.Keeper // nil on a witness
	pgc     *pgPostgres    // its Postgres (pgctl, the guard); nil on a witness
	reach   reachability

	id      atomic.Uint32 // own node id once registered
	started time.Time

	// leaderNotify is raft's NotifyCh: true on gaining leadership, false
	// on losing it (buffered: raft blocks until each edge is read).
	leaderNotify chan bool
	leaderMu     sync.Mutex
	leaderCancel context.CancelFunc
	leaderDone   chan struct{}
	// leaderReady is closed once this leadership's Barrier has applied
	// everything earlier leaders committed (nil while not leading): see
	// requireLeader.
	leaderReady chan struct{}
	// memberMu orders the Raft membership changes of joins and of the
	// leader's voter management: each counts the voters only after the
	// previous change committed.
	memberMu sync.Mutex

	// reloadCh: SIGHUP, read the config file and the certificate files
	// again (reload.go); reloadMu orders the reloads; cfgPath is the file.
	reloadCh     chan struct{}
	reloadMu     sync.Mutex
	cfgPath      string
	registerWake chan struct{} // a reload changed priority or tags

	// fileKeys: the key paths the node's config file gives (SetFileKeys),
	// for the drift check of cluster-wide keys; nil: none known.
	fileKeys map[string]bool

	wg sync.WaitGroup
}

// SetFileKeys records the key paths the node's config file gives
// (config.GivenKeys), so that `config show` and the start-up warning name
// the cluster-wide keys whose file value differs from the replicated one.
// Call it before Run.
func (n *Node) SetFileKeys(keys map[string]bool) { n.fileKeys = keys }

// New builds a sidecar from a validated config. It opens nothing yet.
func New(cfg *config.Config, logger hclog.Logger) (*Node, error) {
	t, err := LoadTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if t != nil {
		if err := checkOwnCertificate(t.Identity(), cfg); err != nil {
			return nil, err
		}
	}
	n := &Node{
		cfg:          cfg,
		logger:       logger,
		tls:          t,
		fsm:          newRaftFSM(logger.Named("fsm")),
		peers:        newPeerPool(dialOptions(t, cfg.Cluster)),
		reloadCh:     make(chan struct{}, 1),
		registerWake: make(chan struct{}, 1),
		leaderNotify: make(chan bool, 1),
		reports:      newReportStore(),
		started:      time.Now(),
		exitCh:       make(chan struct{}),
	}
	n.live.Store(cfg)
	n.metrics = newMetrics(n)
	n.fsm.onPromote = n.metrics.observePromote
	if !cfg.IsWitness() {
		pgc, err := newPGPostgres(cfg, logger)
		if err != nil {
			return nil, err
		}
		passfile := ""
		if cfg.Postgres.AuthMethod != "trust" {
			passfile = cfg.StateDir + "/pgpass"
		}
		pg, err := keeper.New(keeper.Config{
			Node: cfg, Logger: logger.Named("postgres"), Clock: clock.Real{}, Started: n.started, Passfile: passfile,
			Hooks: keeper.Hooks{Fenced: n.metrics.fences.Inc, Promoted: n.metrics.promotions.Inc},
		}, nodeLog{n}, pgc, nodePeers{n})
		if err != nil {
			return nil, err
		}
		n.pg, n.pgc = pg, pgc
	}
	return n, nil
}

// Run starts the sidecar and blocks until ctx is cancelled, then leaves
// cleanly: a primary stops its Postgres and then releases its lease, a Raft
// leader hands leadership over.
func (n *Node) Run(ctx context.Context) error {
	// 0711: the Postgres OS user must traverse it to reach its socket
	// directory and log; it cannot list it. Raft's files are 0700 below.
	if _, err := os.Stat(n.cfg.StateDir); os.IsNotExist(err) {
		if err := os.MkdirAll(n.cfg.StateDir, 0o711); err != nil {
			return fmt.Errorf("create state_dir %s: %w", n.cfg.StateDir, err)
		}
		_ = os.Chmod(n.cfg.StateDir, 0o711)
	}
	// Before anything else touches the state_dir: one agent per state_dir.
	lock, err := statelock.Acquire(n.cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Release()
	if err := n.checkNotLeft(); err != nil {
		return err
	}
	if n.history, err = history.Open(n.historyDir()); err != nil {
		return err
	}
	if n.pg != nil {
		if err := n.pg.Preflight(ctx); err != nil {
			return err
		}
	}
	lis, err := net.Listen("tcp", n.cfg.GRPC.Listen)
	if err != nil {
		return fmt.Errorf("grpc.listen %s: %w (is another process using the port?)", n.cfg.GRPC.Listen, err)
	}
	defer lis.Close()
	defer n.peers.close()

	parts, err := n.setupRaft()
	if err != nil {
		return err
	}
	n.rparts, n.raft = parts, parts.raft
	defer parts.close()

	// Serve only once Raft exists: every RPC reads it.
	n.grpc = n.newGRPCServer()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.logger.Error("grpc server stopped", "error", err)
		}
	}()
	defer n.grpc.Stop()

	if n.cfg.HTTP.Listen != "" {
		if err := n.startHTTP(); err != nil {
			return err
		}
		defer n.stopHTTP()
	}

	if err := n.bootstrapOrJoin(ctx, parts.hasState); err != nil {
		return err
	}
	if n.tls == nil {
		n.warnTLSOff()
	} else {
		n.metrics.setCertExpiry(n.tls.NotAfter())
	}
	n.logger.Info("sidecar started", "name", n.cfg.Name, "kind", n.cfg.Kind, "raft", n.cfg.RaftAdvertise(), "grpc", n.cfg.GRPCAdvertise(), "version", Version)
	if room, need := keeper.LeaseRoom(n.cfg); room < need {
		n.logger.Warn("timing.lease leaves too little room for a Raft leader change: the death of the Raft leader may fence a healthy primary and fail over; lengthen timing.lease or shorten raft.heartbeat_timeout",
			"lease", n.cfg.Timing.Lease.D(), "heartbeat_timeout", n.cfg.Raft.HeartbeatTimeout.D(), "room", room, "needed", need)
	}

	loops, stopLoops := context.WithCancel(context.Background())
	n.goLoop(func() { n.monitorLeadership(loops) })
	n.goLoop(func() { n.registerSelfLoop(loops) })
	n.goLoop(func() { n.reportLoop(loops) })
	n.goLoop(func() { n.historyLoop(loops) })
	n.goLoop(func() { n.reachLoop(loops) })
	n.goLoop(func() { n.notifyLoop(loops) })
	n.goLoop(func() { n.tlsLoop(loops) })
	n.goLoop(func() { n.reloadLoop(loops) })
	pgDone := make(chan struct{})
	if n.pg != nil {
		n.goLoop(func() { defer close(pgDone); n.pg.Run(loops) })
	} else {
		close(pgDone)
	}

	left := false
	select {
	case <-ctx.Done():
	case <-n.exitCh:
		n.logger.Info("left the cluster")
		left = true
	}
	n.logger.Info("shutting down")
	n.shutdown(stopLoops, pgDone, left)
	return nil
}

func (n *Node) goLoop(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// shutdown leaves in the safe order: the loops stop (no reconciler may
// start Postgres again, no lease renewal). Then, by default, Raft
// leadership is handed over and Postgres is left running under its guard
// for the next sidecar (a primary renews its lease once more first, through
// the new leader: keeper.Shutdown). With postgres.stop_on_exit, or after
// leaving the cluster, Postgres stops instead (a primary stops accepting
// writes) and the lease is released so that a failover need not wait for
// its expiry, then Raft leadership is handed over.
func (n *Node) shutdown(stopLoops context.CancelFunc, pgDone <-chan struct{}, left bool) {
	timeout := 10 * time.Second
	if n.cfg.Postgres != nil {
		timeout += n.cfg.Postgres.StopTimeout.D()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if n.pg != nil {
		n.pg.SetStopping()
	}
	stopLoops()
	<-pgDone
	n.stopLeaderLoop()
	stopPG := n.cfg.Postgres == nil || n.cfg.Postgres.StopOnExit || left
	if !stopPG {
		n.transferLeadership()
	}
	if n.pg != nil {
		n.pg.Shutdown(ctx, stopPG)
	}
	n.transferLeadership()
	n.grpc.Stop()
	n.stopHTTP()
	n.wg.Wait()
}

// transferLeadership hands Raft leadership to another voter if this node
// leads.
func (n *Node) transferLeadership() {
	if n.raft.State() != raft.Leader {
		return
	}
	start := time.Now()
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		n.logger.Debug("leadership transfer", "error", err)
		return
	}
	n.logger.Info("raft leadership handed over", "took", time.Since(start).Round(time.Millisecond))
}

// State is the latest applied FSM state; callers must not modify it.
func (n *Node) State() *pb.ClusterState { return n.fsm.State() }

// ID is this node's id in the nodes table (0 until registered).
func (n *Node) ID() uint32 {
	if id := n.id.Load(); id != 0 {
		return id
	}
	if me := fsm.NodeByName(n.fsm.State(), n.cfg.Name); me != nil {
		n.id.Store(me.Id)
		return me.Id
	}
	return 0
}

// self returns this node's row, or nil.
func (n *Node) self() *pb.Node { return fsm.NodeByName(n.fsm.State(), n.cfg.Name) }

// isLeader reports whether this node is the Raft leader.
func (n *Node) isLeader() bool { return n.raft != nil && n.raft.State() == raft.Leader }

// leaderReadyWait bounds how long a leader-only call waits for a new
// leader's Barrier before answering no_leader (the caller asks again).
const leaderReadyWait = 5 * time.Second

// requireLeader is the gate of every leader-only call that reads the state
// to decide or to answer: this node leads Raft (else the not_leader answer)
// and its FSM holds everything earlier leaders committed. A node that has
// just won an election, or been handed the leadership, applies the last
// entries its predecessor committed only once its own first entry commits
// (leaderLoop's Barrier); before that it would answer from a state that
// lacks what an operator was just told was done (a cancelled schedule
// still shown, a stored one refused as "nothing is scheduled").
func (n *Node) requireLeader(ctx context.Context) error {
	deadline := time.Now().Add(leaderReadyWait)
	for {
		if !n.isLeader() {
			return n.notLeader()
		}
		n.leaderMu.Lock()
		ready := n.leaderReady
		n.leaderMu.Unlock()
		if ready != nil {
			select {
			case <-ready:
				return nil
			default:
			}
		}
		if time.Now().After(deadline) {
			return status.Errorf(codes.Unavailable, "%s%s leads Raft but is still applying what earlier leaders committed", noLeaderPrefix, n.cfg.Name)
		}
		// Not ready yet (or its duties not started): leadership is
		// re-checked every few milliseconds, so a lost one answers
		// not_leader at once.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// leaderGRPC returns the gRPC address and name of the current Raft leader.
func (n *Node) leaderGRPC() (addr, name string, err error) {
	raftAddr, id := n.raft.LeaderWithID()
	if raftAddr == "" {
		return "", "", errNoLeader
	}
	if string(id) == n.cfg.Name {
		return n.cfg.GRPCAdvertise(), n.cfg.Name, nil
	}
	if row := fsm.NodeByName(n.fsm.State(), string(id)); row != nil && row.GrpcAddress != "" {
		return row.GrpcAddress, row.Name, nil
	}
	return "", string(id), fmt.Errorf("raft leader %s (%s) is not registered yet: %w", id, raftAddr, errNoLeader)
}

// leaderConn is a client connection to the current Raft leader's sidecar.
func (n *Node) leaderConn() (*grpc.ClientConn, error) {
	addr, _, err := n.leaderGRPC()
	if err != nil {
		return nil, err
	}
	return n.peers.get(addr)
}

// Propose commits a command through the Raft leader (forwarding it when this
// node is a follower) and returns the FSM's answer. It retries while there
// is no leader, until ctx ends.
func (n *Node) Propose(ctx context.Context, cmd *pb.Command) (fsm.Result, error) {
	if cmd.AtUnixMs == 0 {
		cmd.AtUnixMs = time.Now().UnixMilli()
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, err
	}
	for {
		res, err := n.proposeOnce(ctx, data)
		if err == nil || !isTransient(err) {
			if err != nil {
				return res, err
			}
			return res, res.Err
		}
		if errors.Is(err, errLeaderChanged) && ctx.Err() == nil {
			continue // a new leader is known: go there at once
		}
		select {
		case <-ctx.Done():
			return fsm.Result{}, fmt.Errorf("propose %T: %w (last error: %v)", cmd.Cmd, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func isTransient(err error) bool {
	return errors.Is(err, errNoLeader) || errors.Is(err, errLeaderChanged) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		retryable(err)
}

func (n *Node) proposeOnce(ctx context.Context, data []byte) (fsm.Result, error) {
	if n.isLeader() {
		return n.applyLocal(ctx, data)
	}
	addr, _, err := n.leaderGRPC()
	if err != nil {
		return fsm.Result{}, err
	}
	tctx, cancelT := context.WithTimeout(ctx, forwardAttempt(ctx))
	defer cancelT()
	cctx, cancel := cancelOnLeaderChange(tctx, addr, func() string { a, _, _ := n.leaderGRPC(); return a })
	defer cancel()
	conn, err := n.peers.forLeader(cctx, addr)
	if err != nil {
		return fsm.Result{}, err
	}
	resp, err := pb.NewPeerServiceClient(conn).Apply(cctx, &pb.ApplyRequest{Command: data})
	if err != nil {
		if errors.Is(context.Cause(cctx), errLeaderChanged) {
			return fsm.Result{}, fmt.Errorf("forward to %s: %w (%v)", addr, errLeaderChanged, err)
		}
		if status.Code(err) == codes.DeadlineExceeded && ctx.Err() == nil {
			// The attempt ran out, the proposal has time left: the
			// connection may be stale (a TCP connection in retransmission
			// backoff after a healed partition). Dial afresh for the next
			// attempt rather than wait on it again.
			n.peers.drop(addr)
		}
		err = fromStatus(err)
		var fe *fsm.Error
		if errors.As(err, &fe) {
			return fsm.Result{Err: fe}, nil
		}
		return fsm.Result{}, err
	}
	return fsm.Result{Index: resp.Index, NodeID: resp.NodeId}, nil
}

// forwardAttempt bounds one forwarded attempt of a proposal: half of what
// ctx leaves (at least minForwardAttempt, at most peerTimeout), so that a
// stale connection costs one attempt and a fresh one still has time: a lease
// renewal has lease/3 in all.
func forwardAttempt(ctx context.Context) time.Duration {
	d := peerTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, max(time.Until(dl)/2, minForwardAttempt))
	}
	return d
}

// minForwardAttempt: an attempt shorter than this could not even commit.
const minForwardAttempt = 200 * time.Millisecond

// applyLocal applies on this node, which must be the leader.
func (n *Node) applyLocal(ctx context.Context, data []byte) (fsm.Result, error) {
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		return fsm.Result{}, err
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return fsm.Result{}, fmt.Errorf("apply: unexpected fsm response %T", f.Response())
	}
	if res.Err == nil {
		if cmd, err := fsm.Decode(data); err == nil && fsm.Urgent(cmd) {
			// Followers learn a commit index with the next AppendEntries,
			// which an idle leader sends only every CommitTimeout; a new
			// entry (a barrier) carries it at once. Not waited for.
			_ = n.raft.Barrier(time.Second)
		}
	}
	return res, nil
}

// waitCaughtUp blocks until this node has applied everything the leader had
// committed when asked (a read barrier for "what does the cluster say now").
func (n *Node) waitCaughtUp(ctx context.Context) error {
	for {
		target, err := n.leaderCommitIndex(ctx)
		if err == nil {
			for n.raft.AppliedIndex() < target {
				select {
				case <-ctx.Done():
					return fmt.Errorf("catch up with the leader (applied %d of %d): %w", n.raft.AppliedIndex(), target, ctx.Err())
				case <-time.After(20 * time.Millisecond):
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catch up with the leader: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) leaderCommitIndex(ctx context.Context) (uint64, error) {
	if n.isLeader() {
		if err := n.raft.Barrier(5 * time.Second).Error(); err != nil {
			return 0, err
		}
		return n.raft.AppliedIndex(), nil
	}
	conn, err := n.leaderConn()
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	cctx = metadata.AppendToOutgoingContext(cctx, catchUpHeader, "1")
	st, err := pb.NewNodeServiceClient(conn).Status(cctx, &pb.StatusRequest{})
	if err != nil {
		return 0, err
	}
	if st.RaftState != raft.Leader.String() {
		return 0, errNoLeader
	}
	return st.CommitIndex, nil
}

// registerSelfLoop keeps this node's row in the nodes table in line with its
// config (addresses, priority, tags...), once there is a leader.
func (n *Node) registerSelfLoop(ctx context.Context) {
	warned := ""
	for {
		st := n.fsm.State()
		if st.ClusterName != "" {
			warned = n.warnDrift(st, warned)
			want := n.registerCommand()
			if row := fsm.NodeByName(st, n.cfg.Name); row == nil || !sameRegistration(row, want) {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				res, err := n.Propose(pctx, &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: want}})
				cancel()
				if err != nil {
					n.logger.Warn("register this node", "error", err)
				} else {
					n.id.Store(res.NodeID)
					n.logger.Info("registered", "node_id", res.NodeID)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.fsm.Changed():
		case <-n.registerWake:
		case <-time.After(2 * time.Second):
		}
	}
}

// warnDrift logs the cluster-wide keys this node's file gives with another
// value than the replicated configuration (which applies), once per
// distinct set: at start, and again when either side changes. It returns
// what it warned about.
func (n *Node) warnDrift(st *pb.ClusterState, warned string) string {
	var parts []string
	for _, d := range clusterconf.Drift(n.cfg, n.fileKeys, st.GetSettings()) {
		parts = append(parts, fmt.Sprintf("%s: the file says %s, the cluster %s", d.YamlKey, d.Local, d.Cluster))
	}
	text := strings.Join(parts, "; ")
	if text != "" && text != warned {
		n.logger.Warn("cluster-wide keys in this node's config file differ from the cluster's configuration; the cluster's apply (change them with `hasidecar config set`, or remove them from the file)", "drift", text)
	}
	return text
}

func (n *Node) registerCommand() *pb.RegisterNode {
	kind := pb.NodeKind_NODE_KIND_DATA
	if n.cfg.IsWitness() {
		kind = pb.NodeKind_NODE_KIND_WITNESS
	}
	voter := true
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == n.cfg.Name {
				voter = s.Suffrage == raft.Voter
			}
		}
	}
	live := n.conf()
	r := &pb.RegisterNode{
		ClusterName: n.cfg.Cluster,
		Name:        n.cfg.Name,
		Kind:        kind,
		Location:    n.cfg.Location,
		Priority:    int32(live.Priority),
		Tags:        live.Tags,
		RaftAddress: n.cfg.RaftAdvertise(),
		GrpcAddress: n.cfg.GRPCAdvertise(),
		HttpAddress: n.cfg.HTTP.Listen,
		Voter:       voter,
	}
	if n.cfg.Postgres != nil {
		r.Conninfo = n.cfg.PostgresConninfo()
	}
	return r
}

func sameRegistration(row *pb.Node, r *pb.RegisterNode) bool {
	if len(row.Tags) != len(r.Tags) {
		return false
	}
	for i := range row.Tags {
		if row.Tags[i] != r.Tags[i] {
			return false
		}
	}
	return row.Kind == r.Kind && row.Location == r.Location && row.Priority == r.Priority &&
		row.Conninfo == r.Conninfo && row.RaftAddress == r.RaftAddress && row.GrpcAddress == r.GrpcAddress &&
		row.HttpAddress == r.HttpAddress && row.Voter == r.Voter
}
