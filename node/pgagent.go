package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// pgAgent owns the local Postgres of a data node: the reconciler that makes
// it match the FSM (pgagent.go, plan.go), the primary's lease keeper and the
// fencing watchdog (lease.go).
type pgAgent struct {
	n      *Node
	ctl    *pgctl.Controller
	logger hclog.Logger

	obs   atomic.Pointer[pb.PostgresStatus]
	state atomic.Value // string: what the reconciler is doing or waiting for

	// lease keeping (lease.go)
	lease leaseState
	// standbyMode: the running postmaster was started in recovery and no
	// promotion has been asked since; the watchdog never fences it.
	standbyMode atomic.Bool
	// crashedAt: when Postgres last exited without being asked to (zero:
	// running or stopped on purpose).
	crashMu   sync.Mutex
	crashedAt time.Time
	stopping  atomic.Bool
	// lastStartErr: when the last start failed, retry only after a pause.
	lastStartErr time.Time
	// streamingSeen: last time the walreceiver was seen streaming.
	streamingSeen time.Time
	// passfile: the generated libpq password file ("" with auth_method
	// trust); passSecrets, passText, passWritten, passErr: its passwords,
	// the content last written and the last write error (preflight, then
	// the reconciler goroutine only; passfile.go).
	passfile    string
	passSecrets []passSecret
	passText    string
	passWritten bool
	passErr     string
	// roleReady: the replication role was ensured by this process.
	roleMu    sync.Mutex
	roleReady bool
	// expectedStop: the next exit of Postgres was asked for (a fence or a
	// stop), not a crash.
	expectedStop atomic.Bool
	lastErr      string // the reconciler's last error text (its goroutine only)
	sysID        uint64 // the data directory's system identifier, last seen (reconciler only)
	// syncExclude: synchronous-set members being taken out of
	// synchronous_standby_names before the FSM shrinks, in term syncTerm,
	// which this node began as primary at syncTermAt (reconciler only).
	syncExclude map[uint32]bool
	syncTerm    uint64
	syncTermAt  time.Time
	rejoinCh    chan rejoinRequest // node rejoin requests, run by the reconciler
	guard       *pgGuard           // the watchdog process (watchdog goroutine only)
	// healthyAt: when Postgres last answered the status query (unix nanos).
	healthyAt atomic.Int64
	// disk: free space and disk-full writes (disk.go).
	disk diskWatch
}

func newPGAgent(n *Node) (*pgAgent, error) {
	pc := n.cfg.Postgres
	ctl, err := pgctl.New(pgctl.Options{
		BinDir:          pc.BinDir,
		DataDir:         pc.DataDir,
		Port:            pc.Port,
		ListenAddresses: pc.ListenAddresses,
		SocketDir:       pc.SocketDir,
		OSUser:          pc.OSUser,
		Superuser:       pc.Superuser,
		LogFile:         pc.LogFile,
		Logger:          n.logger.Named("pgctl"),
		StopTimeout:     pc.StopTimeout.D(),
		StartTimeout:    pc.StartTimeout.D(),
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	a := &pgAgent{n: n, ctl: ctl, logger: n.logger.Named("postgres"), rejoinCh: make(chan rejoinRequest)}
	a.obs.Store(&pb.PostgresStatus{Port: uint32(pc.Port)})
	a.state.Store("starting")
	if pc.AuthMethod != "trust" {
		a.passfile = n.cfg.StateDir + "/pgpass"
	}
	return a, nil
}

// preflight checks what can be checked before joining: directories, and
// that the data directory is usable. Nothing is changed in a data
// directory that is not ours.
func (a *pgAgent) preflight(ctx context.Context) error {
	if err := a.ctl.PrepareDirs(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	st, err := a.ctl.InspectDataDir(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if st == pgctl.DataDirNotPostgres {
		return fmt.Errorf("postgres.data_dir %s holds files but is not a Postgres data directory (no PG_VERSION): nothing was changed; empty it or point postgres.data_dir elsewhere", a.n.cfg.Postgres.DataDir)
	}
	if a.passfile != "" {
		if err := a.writePassfile(); err != nil {
			return err
		}
	}
	// Our own Postgres of a previous run dies with that run (parent-death
	// signal) but may take a moment to release its port: retry for a while.
	var portErr error
	for i := 0; i < 75; i++ {
		if portErr = a.ctl.CheckPortFree(ctx); portErr == nil {
			return nil
		}
		if i%25 == 0 {
			a.logger.Warn("the postgres port is busy: waiting for it", "error", portErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("postgres: %w", portErr)
}

// writePassfile reads the password files and writes the passfile for the
// membership known at start (passfile.go).
func (a *pgAgent) writePassfile() error {
	if err := a.loadPassSecrets(); err != nil {
		return err
	}
	return a.refreshPassfile()
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password file %s: %w", path, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return s, nil
}

// localSystemIdentifier is the system identifier of the local data
// directory, 0 when there is none.
func (a *pgAgent) localSystemIdentifier(ctx context.Context) uint64 {
	if st, err := a.ctl.InspectDataDir(ctx); err != nil || st != pgctl.DataDirValid {
		return 0
	}
	cd, err := a.ctl.ControlData(ctx)
	if err != nil {
		return 0
	}
	return cd.SystemIdentifier
}

func (a *pgAgent) observed() *pb.PostgresStatus { return a.obs.Load() }

func (a *pgAgent) stateText() string { s, _ := a.state.Load().(string); return s }

func (a *pgAgent) setState(s string) {
	if old := a.stateText(); old != s {
		a.logger.Info("reconciler", "state", s)
		a.state.Store(s)
	}
}

// run is the reconciler loop: after catching up with the leader (so that a
// restarted node never acts on a stale FSM), every monitor interval or FSM
// change it observes Postgres, plans and executes.
func (a *pgAgent) run(ctx context.Context) {
	a.setState("catching up with the raft leader")
	for a.n.waitCaughtUp(ctx) != nil {
		if ctx.Err() != nil {
			return
		}
	}
	var loops sync.WaitGroup
	defer loops.Wait()
	loops.Add(2)
	go func() { defer loops.Done(); a.leaseLoop(ctx) }()
	go func() { defer loops.Done(); a.watchdog(ctx) }()
	interval := a.n.cfg.Timing.MonitorInterval.D()
	for {
		if a.reconcileOnce(ctx) {
			continue // the local state changed: plan again at once
		}
		select {
		case <-ctx.Done():
			return
		case <-a.n.fsm.Changed():
		case <-time.After(interval):
		case <-a.exited():
		case r := <-a.rejoinCh:
			steps, err := a.rejoin(ctx, r.req)
			r.reply <- rejoinReply{steps: steps, err: err}
		}
	}
}

// exited is closed when the running postmaster exits; nil (never ready)
// when none runs, so that a select does not spin.
func (a *pgAgent) exited() <-chan struct{} {
	if !a.ctl.Running() {
		return nil
	}
	return a.ctl.Exited()
}

// reconcileOnce observes, plans and executes; it reports whether an action
// changed the local state (a start, stop, promotion...), after which the
// caller plans again at once instead of waiting for the next tick.
func (a *pgAgent) reconcileOnce(ctx context.Context) (changed bool) {
	if a.passfile != "" {
		// The same failure every round is logged once.
		if err := a.refreshPassfile(); err != nil {
			if msg := err.Error(); msg != a.passErr {
				a.logger.Error("passfile for the current members", "error", err)
				a.passErr = msg
			}
		} else {
			a.passErr = ""
		}
	}
	o := a.observe(ctx)
	a.checkStorage(ctx, o)
	if o.Running && o.InRecovery {
		// A standby the FSM just named primary renews the lease in the new
		// term at once, so the plan can promote in this same round.
		a.renewNow(ctx)
	}
	d := a.desired(ctx)
	acts, why := plan(d, o)
	a.setState(why)
	for _, act := range acts {
		if ctx.Err() != nil {
			return false
		}
		// Fencing token: an action planned in an older term is dropped.
		if cur := a.n.fsm.State().Term; act.Term < cur {
			a.logger.Info("dropping an action from an older term", "action", act.Kind, "term", act.Term, "current", cur)
			return true
		}
		if err := a.execute(ctx, act); err != nil {
			a.noteWriteError(err)
			// The same failure every interval is logged once, then at debug.
			if msg := err.Error(); msg != a.lastErr {
				a.logger.Error("reconcile", "action", act.Kind.String(), "term", act.Term, "error", err)
				a.lastErr = msg
			} else {
				a.logger.Debug("reconcile (again)", "action", act.Kind.String(), "error", err)
			}
			a.setState(fmt.Sprintf("%s failed: %v", act.Kind, err))
			return false
		}
		changed = changed || act.Kind.changesState()
	}
	a.lastErr = ""
	return changed
}

// desired reads the FSM and the lease keeper.
func (a *pgAgent) desired(ctx context.Context) desired {
	st := a.n.fsm.State()
	d := desired{ClusterSysID: st.SystemIdentifier, Term: st.Term, Me: fsm.NodeByName(st, a.n.cfg.Name), Primary: fsm.Primary(st),
		ManualRejoin: a.n.cfg.Postgres.ManualRejoin, DiskFull: a.observed().GetDiskFull()}
	if d.Me != nil && d.Primary != nil && d.Primary.Id == d.Me.Id {
		d.LeaseValid = a.leaseValid()
		if st.Lease.GetHolderId() == d.Me.Id {
			d.PromoteTimeline = st.Lease.GetTimeline()
		}
		if sw := st.Switchover; sw != nil && sw.FromId == d.Me.Id && sw.Term == st.Term {
			d.SwitchoverFrom, d.ShutdownReported = true, sw.ShutdownLsn != 0
		}
	}
	if d.Me != nil && d.Primary != nil && d.Primary.Id != d.Me.Id && !a.ctl.Running() {
		d.SkipRewind = a.skipRewind(ctx, st)
	}
	if d.Primary == nil && st.Term == 0 && d.Me != nil {
		d.MayClaimPrimary = a.claimAllowed()
	}
	return d
}

// claimAllowed: at bootstrap, the node with bootstrap: true claims the
// primary role, or a node that already holds a data directory to adopt, or
// any data node once the cluster has waited a minute without a primary.
func (a *pgAgent) claimAllowed() bool {
	if a.n.cfg.Bootstrap {
		return true
	}
	if o := a.observed(); o.SystemIdentifier != 0 {
		return true
	}
	return time.Since(a.n.started) > time.Minute
}

// observe queries the local Postgres and the data directory.
func (a *pgAgent) observe(ctx context.Context) observed {
	var o observed
	st, err := a.ctl.InspectDataDir(ctx)
	switch {
	case err != nil:
		a.logger.Warn("inspect data directory", "error", err)
		o.Dir = dirNotPostgres
	case st == pgctl.DataDirNotPostgres:
		o.Dir = dirNotPostgres
	case st == pgctl.DataDirValid:
		o.Dir = dirValid
	default:
		o.Dir = dirMissing
	}
	status := &pb.PostgresStatus{Port: uint32(a.n.cfg.Postgres.Port)}
	o.Running = a.ctl.Running()
	if o.Dir == dirValid {
		o.StandbySignal = a.ctl.IsStandbySignal()
	}
	if o.Dir == dirValid && !o.Running {
		// pg_controldata is a subprocess: only while Postgres is down (when
		// it runs, the status query gives its timeline and identifier).
		if cd, err := a.ctl.ControlData(ctx); err == nil {
			o.SysID = cd.SystemIdentifier
			a.sysID = cd.SystemIdentifier
			o.Timeline = cd.TimelineID
			status.SystemIdentifier = cd.SystemIdentifier
			status.Timeline = cd.TimelineID
		}
	}
	if o.Running {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := a.ctl.Status(qctx)
		cancel()
		if err != nil {
			status.Error = err.Error()
			a.noteWriteError(err)
			// Running but not answering: keep the last known role.
			o.InRecovery = a.standbyMode.Load()
			o.SysID = a.sysID
		} else {
			a.healthyAt.Store(time.Now().UnixNano())
			status = statusToProto(s, a.n.cfg.Postgres.Port)
			if s.SystemIdentifier != 0 {
				a.sysID = s.SystemIdentifier
			}
			o.SysID = a.sysID
			status.SystemIdentifier = a.sysID
			o.InRecovery = s.InRecovery
			o.Timeline = s.Timeline
			o.Streaming = s.WalReceiverStatus == "streaming"
		}
	}
	status.Running = o.Running && status.Error == ""
	a.sampleDisk(ctx, status)
	now := time.Now()
	if !o.Running || !o.InRecovery || o.Streaming || a.streamingSeen.IsZero() {
		a.streamingSeen = now
	}
	// A standby that has not streamed for 10 monitor intervals while its
	// primary answers has likely diverged: the plan rewinds it.
	o.Stuck = o.Running && o.InRecovery && now.Sub(a.streamingSeen) > 10*a.n.cfg.Timing.MonitorInterval.D() && a.primaryAnswers()
	o.StartFailed = !a.lastStartErr.IsZero() && now.Sub(a.lastStartErr) < 5*time.Second
	a.obs.Store(status)
	return o
}

// primaryAnswers reports whether the primary's Postgres accepts TCP
// connections (as the matrix probe saw it, or directly).
func (a *pgAgent) primaryAnswers() bool {
	p := fsm.Primary(a.n.fsm.State())
	if p == nil {
		return false
	}
	addr := conninfoAddr(p.Conninfo)
	if addr == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func statusToProto(s *pgctl.Status, port int) *pb.PostgresStatus {
	out := &pb.PostgresStatus{
		Running: s.Running, InRecovery: s.InRecovery, Timeline: s.Timeline, SystemIdentifier: s.SystemIdentifier,
		CurrentLsn: s.CurrentLSN, FlushLsn: s.FlushLSN, ReceiveLsn: s.ReceiveLSN, ReplayLsn: s.ReplayLSN,
		WalReceiverStatus: s.WalReceiverStatus, UpstreamConninfo: s.UpstreamConninfo, ReplayLagMs: s.ReplayLagMillis,
		Port: uint32(port), Connections: s.Connections, ArchiveReady: s.ArchiveReady,
	}
	if !s.PostmasterStart.IsZero() {
		out.PostmasterStartUnixMs = s.PostmasterStart.UnixMilli()
	}
	for _, r := range s.Replication {
		out.Replication = append(out.Replication, &pb.ReplicationRow{
			ApplicationName: r.ApplicationName, ClientAddr: r.ClientAddr, State: r.State, SentLsn: r.SentLSN,
			WriteLsn: r.WriteLSN, FlushLsn: r.FlushLSN, ReplayLsn: r.ReplayLSN, SyncState: r.SyncState, SlotName: r.SlotName,
		})
	}
	return out
}

// writable reports whether this node's Postgres is the current,
// lease-holding primary (the /primary health check).
func (a *pgAgent) writable() bool {
	o := a.observed()
	me := a.n.self()
	return o.GetRunning() && !o.InRecovery && me != nil && me.Role == pb.NodeRole_NODE_ROLE_PRIMARY && a.leaseValid()
}

// shutdown stops Postgres on a clean exit; a primary then releases its
// lease so that the failover need not wait for it to expire.
func (a *pgAgent) shutdown(ctx context.Context) {
	a.stopping.Store(true)
	wasPrimary := a.ctl.Running() && !a.standbyMode.Load()
	if a.ctl.Running() {
		a.logger.Info("stopping postgres")
		if err := a.ctl.Stop(ctx, pgctl.StopFast); err != nil {
			a.logger.Error("stop postgres", "error", err)
			a.ctl.Kill()
		}
	}
	a.clearLease()
	st := a.n.fsm.State()
	me := fsm.NodeByName(st, a.n.cfg.Name)
	if wasPrimary && me != nil && st.Lease.GetHolderId() == me.Id && !a.ctl.Running() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := a.n.Propose(rctx, &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: me.Id, Term: st.Term, Reason: "the primary's sidecar is shutting down"}}})
		if err != nil {
			a.logger.Warn("release lease", "error", err)
		} else {
			a.logger.Info("lease released", "term", st.Term)
		}
	}
}

// recordEvent commits an event, best effort, in the term it belongs to.
func (a *pgAgent) recordEvent(ctx context.Context, typ string, ok bool, term uint64, details string) {
	me := a.n.self()
	if me == nil {
		return
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.n.Propose(ectx, &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: me.Id, Type: typ, Ok: ok, Term: term, Details: details}}}); err != nil {
		a.logger.Warn("record event", "type", typ, "error", err)
	}
}

// upstreamConninfo is how this node reaches the primary for replication
// (String for primary_conninfo and libpq tools, PgxConfig for pgx).
func (a *pgAgent) upstreamConninfo(p *pb.Node, superuser bool) pgctl.Conninfo {
	pc := a.n.cfg.Postgres
	host, port := "", ""
	if addr := conninfoAddr(p.Conninfo); addr != "" {
		host, port, _ = net.SplitHostPort(addr)
	}
	kv := pgctl.Conninfo{
		"host": host, "port": port, "application_name": a.n.cfg.Name, "connect_timeout": "2",
		"keepalives": "1", "keepalives_idle": "2", "keepalives_interval": "1", "keepalives_count": "3",
	}
	if superuser {
		kv["user"], kv["dbname"] = pc.Superuser, "postgres"
	} else {
		kv["user"] = pc.ReplicationUser
	}
	if a.passfile != "" {
		kv["passfile"] = a.passfile
	}
	return kv
}

func (a *pgAgent) markExpectedStop() { a.expectedStop.Store(true) }

// expectStop consumes the mark left by markExpectedStop.
func (a *pgAgent) expectStop() bool { return a.expectedStop.Swap(false) }

// currentUser is the OS user this sidecar runs as.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
