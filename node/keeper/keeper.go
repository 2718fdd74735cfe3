package keeper

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Keeper owns the local Postgres of a data node: the reconciler that makes
// it match the FSM (keeper.go, plan.go, execute.go), the primary's lease
// keeper and the fencing watchdog (lease.go, guard.go), the synchronous set
// (sync.go) and the disk (disk.go, storage.go). See doc.go for how it is
// driven.
//
// Concurrency: the step methods may run in different goroutines (Run
// drives Reconcile, RenewLease and WatchdogTick from three); the fields
// each step owns are marked, the shared ones are atomics or under a mutex.
type Keeper struct {
	// cfg: the node's configuration as the sidecar started; the keys a
	// reload may change (postgres.parameters, postgres.hba) are read
	// through live (SetNodeConfig).
	cfg    *config.Config
	live   atomic.Pointer[config.Config]
	logger hclog.Logger
	clk    Clock
	log    Log
	pg     Postgres
	peers  Peers
	hooks  Hooks
	// started: when the sidecar started (claimAllowed).
	started time.Time

	obs   atomic.Pointer[pb.PostgresStatus]
	state atomic.Value // string: what the reconciler is doing or waiting for

	// lease keeping (lease.go)
	lease leaseState
	// answers: the LSN answers sent lately, for a promotion's first lease
	// (lease.go anchorLease).
	answers answerLog
	// standbyMode: the running postmaster was started in recovery and no
	// promotion has been asked since; the watchdog never fences it.
	standbyMode atomic.Bool
	// recloned: this process cloned afresh while the node was marked
	// needs_reclone (the mark is cleared next; not cloned again).
	recloned atomic.Bool
	// slotIdle: on the primary, since when each standby's slot has been
	// seen inactive (slot_retention; the reconciler only).
	slotIdle map[string]time.Time
	// startingPrimary: a start as primary is in flight; its guard, armed
	// before the postmaster, stays although no postmaster runs yet.
	startingPrimary atomic.Bool
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
	// the reconciler only; passfile.go).
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
	// guardMu: the watchdog's guard upkeep (guardTick) and an adoption
	// (the guard's connection, then the postmaster) exclude each other:
	// between those two steps Postgres is not yet this sidecar's, and a
	// guardTick then closed the adopted guard's connection as that of a
	// postmaster gone, leaving the guard unrenewed until it killed Postgres.
	guardMu sync.Mutex
	// shutDownExiting: the switchover's stop found the shutdown checkpoint
	// in pg_control; the postmaster, still exiting, can write nothing more
	// and the watchdog does not fence it (a `fence` event after every
	// switchover, and an immediate stop cutting its last WAL sends).
	shutDownExiting atomic.Bool
	lastErr         string // the reconciler's last error text (reconciler only)
	sysID           uint64 // the data directory's system identifier, last seen (reconciler only)
	// syncExclude: synchronous-set members being taken out of
	// synchronous_standby_names before the FSM shrinks, in term syncTerm,
	// which this node began as primary at syncTermAt (reconciler only).
	syncExclude map[uint32]bool
	// syncInclude: standbys Postgres waits for before the FSM names them,
	// when the committed set is empty (manageSync; reconciler only).
	syncInclude []uint32
	// syncStep, syncStepFloor: the synchronous_standby_names of the step
	// manageSync waits on (widening from empty, narrowing, raising k) and
	// the primary's flush position when Postgres was first seen running it
	// (stepCaughtUp; reconciler only).
	syncStep      string
	syncStepFloor uint64
	syncTerm      uint64
	syncTermAt    time.Time
	rejoinCh      chan rejoinRequest  // node rejoin requests, run by the reconciler in Run
	restartCh     chan restartRequest // operator restarts, run by the reconciler in Run (restart.go)
	reloadCh      chan reloadRequest  // operator reloads, run by the reconciler in Run (restart.go)
	// healthyAt: when Postgres last answered the status query (Clock
	// time, unix nanos).
	healthyAt atomic.Int64
	// disk: free space and disk-full writes (disk.go).
	disk diskWatch
	// wasRunning: Postgres ran at the last watchdog tick (watchdog only).
	wasRunning bool
	// renewNext: when the lease keeper renews next (lease keeper only).
	renewNext time.Time
	// aside: tasks queued aside by the steps (see Aside, goAside).
	aside asideQueue
	// dogWake: a WatchdogTick is wanted now (pokeWatchdog; Run's watchdog).
	dogWake chan struct{}
	// conf: the inputs of the last successful configure (reconciler only).
	conf confMemo
}

// Config is how a Keeper is built.
type Config struct {
	Node    *config.Config // this sidecar's config (name, postgres.*, timing.*); a data node's
	Logger  hclog.Logger
	Clock   Clock
	Started time.Time // when the sidecar started (Clock time)
	// Passfile is the generated libpq password file ("" with auth_method trust).
	Passfile string
	Hooks    Hooks
	// AnswerNonce starts this process's LSN-answer tokens (lease.go
	// NoteAnswer); 0 draws one from crypto/rand. The simulator sets it so
	// that a seed replays.
	AnswerNonce uint64
}

// New builds the keeper of a data node. It touches nothing yet.
func New(cfg Config, log Log, pg Postgres, peers Peers) (*Keeper, error) {
	if cfg.Node == nil || cfg.Node.Postgres == nil {
		return nil, errors.New("keeper: a data node's config (with postgres) is needed")
	}
	if cfg.Clock == nil || log == nil || pg == nil || peers == nil {
		return nil, errors.New("keeper: clock, log, postgres and peers are all needed")
	}
	lg := cfg.Logger
	if lg == nil {
		lg = hclog.NewNullLogger()
	}
	a := &Keeper{cfg: cfg.Node, logger: lg, clk: cfg.Clock, log: log, pg: pg, peers: peers, hooks: cfg.Hooks,
		started: cfg.Started, passfile: cfg.Passfile, rejoinCh: make(chan rejoinRequest), restartCh: make(chan restartRequest), reloadCh: make(chan reloadRequest), dogWake: make(chan struct{}, 1)}
	a.obs.Store(&pb.PostgresStatus{Port: uint32(cfg.Node.Postgres.Port)})
	a.live.Store(cfg.Node)
	a.state.Store("starting")
	a.answers.next = cfg.AnswerNonce
	if a.answers.next == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("keeper: draw the answer nonce: %w", err)
		}
		a.answers.next = binary.LittleEndian.Uint64(b[:])
	}
	return a, nil
}

// self returns this node's row, or nil.
func (a *Keeper) self() *pb.Node { return fsm.NodeByName(a.log.State(), a.cfg.Name) }

// SetStopping tells the keeper the sidecar is shutting down: no renewal, no
// fence, no crash handling from now on.
func (a *Keeper) SetStopping() { a.stopping.Store(true) }

// Preflight checks what can be checked before joining: directories, and
// that the data directory is usable. Nothing is changed in a data
// directory that is not ours.
func (a *Keeper) Preflight(ctx context.Context) error {
	if err := a.pg.PrepareDirs(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	st, err := a.pg.InspectDataDir(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if st == pgctl.DataDirNotPostgres {
		return fmt.Errorf("postgres.data_dir %s holds files but is not a Postgres data directory (no PG_VERSION): nothing was changed; empty it or point postgres.data_dir elsewhere", a.cfg.Postgres.DataDir)
	}
	// A postmaster this process did not start: one the previous sidecar
	// left running under its guard is adopted (checked by planAdopt once
	// caught up); with postgres.stop_on_exit our own of a previous run dies
	// with that run (parent-death signal) within moments; one that stays is
	// another node's (a data_dir shared by mistake) or started by hand.
	// Refuse before joining: nothing is changed, no Raft membership is
	// asked for.
	adopt := false
	for i := 0; ; i++ {
		pid := a.pg.ForeignPostmaster()
		if pid == 0 {
			break
		}
		if ad := a.adoptable(ctx); ad != nil && ad.GuardPID == pid {
			// Left running by the previous sidecar under its guard: the
			// reconciler adopts it once caught up with the cluster, after
			// checking it (planAdopt).
			a.logger.Info("a postmaster the previous sidecar left running under its guard: adopting it once caught up with the cluster", "pid", pid, "armed", ad.Armed, "term", ad.Term)
			adopt = true
			break
		}
		if i == 50 {
			return foreignPostmasterError(a.cfg.Postgres.DataDir, pid)
		}
		if i == 0 {
			a.logger.Warn("a postmaster this agent did not start runs on the data directory: waiting for it to exit", "pid", pid)
		}
		if err := a.clk.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	if a.passfile != "" {
		if err := a.writePassfile(); err != nil {
			return err
		}
	}
	if adopt {
		return nil // its port is in use: by the postmaster to adopt
	}
	// Our own Postgres of a previous run dies with that run (parent-death
	// signal) but may take a moment to release its port: retry for a while.
	var portErr error
	for i := 0; i < 75; i++ {
		if portErr = a.pg.CheckPortFree(ctx); portErr == nil {
			return nil
		}
		if i%25 == 0 {
			a.logger.Warn("the postgres port is busy: waiting for it", "error", portErr)
		}
		if err := a.clk.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("postgres: %w", portErr)
}

// foreignPostmasterError: the data directory is in use by a postmaster
// this agent did not start (Preflight, DryRun).
func foreignPostmasterError(dataDir string, pid int) error {
	return fmt.Errorf("postgres.data_dir %s is in use by a running postmaster (pid %d) that this agent did not start: another node's data directory, or a Postgres started by hand? Nothing was changed and this node did not join; stop that Postgres or point postgres.data_dir elsewhere", dataDir, pid)
}

// writePassfile reads the password files and writes the passfile for the
// membership known at start (passfile.go).
func (a *Keeper) writePassfile() error {
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

// LocalSystemIdentifier is the system identifier of the local data
// directory, 0 when there is none.
func (a *Keeper) LocalSystemIdentifier(ctx context.Context) uint64 {
	if st, err := a.pg.InspectDataDir(ctx); err != nil || st != pgctl.DataDirValid {
		return 0
	}
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		return 0
	}
	return cd.SystemIdentifier
}

// Observed is the local Postgres as last observed (never nil).
func (a *Keeper) Observed() *pb.PostgresStatus { return a.obs.Load() }

func (a *Keeper) observed() *pb.PostgresStatus { return a.obs.Load() }

// StateText says what the reconciler is doing or waiting for.
func (a *Keeper) StateText() string { return a.stateText() }

func (a *Keeper) stateText() string { s, _ := a.state.Load().(string); return s }

func (a *Keeper) setState(s string) {
	if old := a.stateText(); old != s {
		a.logger.Info("reconciler", "state", s)
		a.state.Store(s)
	}
}

// Run drives the keeper until ctx ends: after catching up with the leader
// (so that a restarted node never acts on a stale FSM), the reconciler
// every monitor interval, FSM change or Postgres exit; the lease keeper;
// the watchdog at the time it asks for and whenever something it watches
// changes; and the tasks queued aside. Every
// goroutine it starts has ended when it returns.
func (a *Keeper) Run(ctx context.Context) {
	a.setState("catching up with the raft leader")
	for a.log.WaitCaughtUp(ctx) != nil {
		if ctx.Err() != nil {
			return
		}
	}
	var loops sync.WaitGroup
	defer loops.Wait()
	a.aside.spawn(ctx, &loops)
	defer a.aside.stop() // runs before loops.Wait: what was started is joined
	loops.Add(2)
	go func() { defer loops.Done(); a.leaseLoop(ctx) }()
	go func() { defer loops.Done(); a.watchdog(ctx) }()
	interval := a.cfg.Timing.MonitorInterval.D()
	for {
		planned := a.log.State()
		if a.Reconcile(ctx) {
			continue // the local state changed: plan again at once
		}
		if !a.waitRound(ctx, planned, a.leaseValid(), a.clk.Now().Add(interval)) {
			return
		}
	}
}

// waitRound waits for the next reconciler round: until due, an FSM change,
// the postmaster's exit, or a rejoin or restart request (served here). An
// FSM change that is only a renewal of the lease the last round planned on
// (fsm.OnlyRenewed; a cluster at rest applies one every lease/3 and every
// node would query its Postgres for each), with this node's own lease as
// valid or not as then, is no reason to plan again: it waits on, for the
// same due time, so that the round every monitor interval still comes.
// It returns false once ctx ended.
func (a *Keeper) waitRound(ctx context.Context, planned *pb.ClusterState, valid bool, due time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-a.log.Changed():
			if fsm.OnlyRenewed(planned, a.log.State()) && a.leaseValid() == valid && a.clk.Now().Before(due) {
				continue
			}
		case <-a.clk.After(due.Sub(a.clk.Now())):
		case <-a.exited():
		case r := <-a.rejoinCh:
			steps, err := a.Rejoin(ctx, r.req)
			r.reply <- rejoinReply{steps: steps, err: err}
		case r := <-a.restartCh:
			r.reply <- a.restartPostgres(ctx)
		case r := <-a.reloadCh:
			r.reply <- a.reloadPostgres(ctx)
		}
		return true
	}
}

// exited is closed when the running postmaster exits; nil (never ready)
// when none runs, so that a select does not spin.
func (a *Keeper) exited() <-chan struct{} {
	if !a.pg.Running() {
		return nil
	}
	return a.pg.Exited()
}

// Reconcile is one reconciler round: it observes, plans and executes; it
// reports whether an action changed the local state (a start, stop,
// promotion...), after which the caller plans again at once instead of
// waiting for the next tick.
func (a *Keeper) Reconcile(ctx context.Context) (changed bool) {
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
	if o.Running && o.InRecovery && !a.leaseValid() {
		// A standby the FSM just named primary takes its first lease from
		// the decision's anchor, else renews in the new term at once, so
		// that the plan can promote in this same round. (The lease keeper
		// renews as well, in parallel.)
		if st := a.log.State(); !a.anchorLease(st) || !a.leaseValid() {
			a.renewNow(ctx)
		}
	}
	d := a.desired(ctx)
	acts, why := plan(d, o)
	a.setState(why)
	for _, act := range acts {
		if ctx.Err() != nil {
			return false
		}
		// Fencing token: an action planned in an older term is dropped.
		if cur := a.log.State().Term; act.Term < cur {
			a.logger.Info("dropping an action from an older term", "action", act.Kind, "term", act.Term, "current", cur)
			return true
		}
		err := a.execute(ctx, act)
		if act.Kind.changesState() {
			a.pokeWatchdog() // Postgres may have started, stopped or been promoted
		}
		if err != nil {
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
func (a *Keeper) desired(ctx context.Context) desired {
	st := a.log.State()
	d := desired{ClusterSysID: st.SystemIdentifier, Term: st.Term, Me: fsm.NodeByName(st, a.cfg.Name), Primary: fsm.Primary(st),
		ManualRejoin: a.cfg.Postgres.ManualRejoin, DiskFull: a.observed().GetDiskFull()}
	if d.Me != nil {
		if !d.Me.NeedsReclone {
			a.recloned.Store(false) // a later mark asks for a new clone
		}
		d.Recloned = a.recloned.Load()
	}
	if d.Me != nil && d.Primary != nil && d.Primary.Id == d.Me.Id {
		d.LeaseValid = a.leaseValid()
		d.HoldsLease = st.Lease.GetHolderId() == d.Me.Id && st.Lease.GetTerm() == st.Term
		if st.Lease.GetHolderId() == d.Me.Id {
			d.PromoteTimeline = st.Lease.GetTimeline()
		}
		if sw := st.Switchover; sw != nil && sw.FromId == d.Me.Id && sw.Term == st.Term {
			d.SwitchoverFrom, d.ShutdownReported = true, sw.ShutdownLsn != 0
		}
	}
	if d.Me != nil && d.Primary != nil && d.Primary.Id != d.Me.Id && !a.pg.Running() {
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
func (a *Keeper) claimAllowed() bool {
	if a.cfg.Bootstrap {
		return true
	}
	if o := a.observed(); o.SystemIdentifier != 0 {
		return true
	}
	return a.clk.Now().Sub(a.started) > time.Minute
}

// observe queries the local Postgres and the data directory.
func (a *Keeper) observe(ctx context.Context) observed {
	var o observed
	st, err := a.pg.InspectDataDir(ctx)
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
	status := &pb.PostgresStatus{Port: uint32(a.cfg.Postgres.Port)}
	o.Running = a.pg.Running()
	if !o.Running && o.Dir == dirValid {
		o.Adopt = a.adoptable(ctx)
	}
	if o.Dir == dirValid {
		o.StandbySignal = a.pg.IsStandbySignal()
	}
	if o.Dir == dirValid && !o.Running {
		// pg_controldata is a subprocess: only while Postgres is down (when
		// it runs, the status query gives its timeline and identifier).
		if cd, err := a.pg.ControlData(ctx); err == nil {
			o.SysID = cd.SystemIdentifier
			a.sysID = cd.SystemIdentifier
			o.Timeline = cd.TimelineID
			status.SystemIdentifier = cd.SystemIdentifier
			status.Timeline = cd.TimelineID
		}
	}
	if o.Running {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := a.pg.Status(qctx)
		cancel()
		if err != nil {
			status.Error = err.Error()
			a.noteWriteError(err)
			// Running but not answering: keep the last known role.
			o.InRecovery = a.standbyMode.Load()
			o.SysID = a.sysID
		} else {
			a.healthyAt.Store(a.clk.Now().UnixNano())
			status = StatusToProto(s, a.cfg.Postgres.Port)
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
	now := a.clk.Now()
	if !o.Running || !o.InRecovery || o.Streaming || a.streamingSeen.IsZero() {
		a.streamingSeen = now
	}
	// A standby that has not streamed for 10 monitor intervals while its
	// primary answers has likely diverged: the plan rewinds it.
	o.Stuck = o.Running && o.InRecovery && now.Sub(a.streamingSeen) > 10*a.cfg.Timing.MonitorInterval.D() && a.primaryAnswers()
	o.StartFailed = !a.lastStartErr.IsZero() && now.Sub(a.lastStartErr) < 5*time.Second
	a.obs.Store(status)
	return o
}

// primaryAnswers reports whether the primary's Postgres accepts TCP
// connections.
func (a *Keeper) primaryAnswers() bool {
	p := fsm.Primary(a.log.State())
	if p == nil {
		return false
	}
	return a.peers.PostgresAnswers(p, time.Second)
}

// StatusToProto is a status query's answer as the API carries it.
func StatusToProto(s *pgctl.Status, port int) *pb.PostgresStatus {
	out := &pb.PostgresStatus{
		Running: s.Running, InRecovery: s.InRecovery, Timeline: s.Timeline, SystemIdentifier: s.SystemIdentifier,
		CurrentLsn: s.CurrentLSN, FlushLsn: s.FlushLSN, ReceiveLsn: s.ReceiveLSN, ReplayLsn: s.ReplayLSN,
		WalReceiverStatus: s.WalReceiverStatus, UpstreamConninfo: s.UpstreamConninfo, ReplayLagMs: s.ReplayLagMillis,
		Port: uint32(port), Connections: s.Connections, ArchiveReady: s.ArchiveReady,
		PendingRestart: s.PendingRestart,
	}
	if !s.PostmasterStart.IsZero() {
		out.PostmasterStartUnixMs = s.PostmasterStart.UnixMilli()
	}
	for _, r := range s.Replication {
		out.Replication = append(out.Replication, &pb.ReplicationRow{
			ApplicationName: r.ApplicationName, ClientAddr: r.ClientAddr, State: r.State, SentLsn: r.SentLSN,
			WriteLsn: r.WriteLSN, FlushLsn: r.FlushLSN, ReplayLsn: r.ReplayLSN, SyncState: r.SyncState, SlotName: r.SlotName, ReplayLagMs: r.ReplayLagMillis,
		})
	}
	for _, sl := range s.Slots {
		out.Slots = append(out.Slots, &pb.SlotStatus{Name: sl.Name, Active: sl.Active, WalStatus: sl.WalStatus, RetainedBytes: sl.RetainedBytes})
	}
	return out
}

// Writable reports whether this node's Postgres is the current,
// lease-holding primary (the /primary health check).
func (a *Keeper) Writable() bool {
	o := a.observed()
	me := a.self()
	return o.GetRunning() && !o.InRecovery && me != nil && me.Role == pb.NodeRole_NODE_ROLE_PRIMARY && a.leaseValid()
}

// Shutdown leaves Postgres on a clean exit (after Run returned). Unless
// stopPostgres, a running Postgres is left to the next sidecar under its
// guard (Detach). Otherwise it stops Postgres and a primary then releases
// its lease so that the failover need not wait for it to expire.
func (a *Keeper) Shutdown(ctx context.Context, stopPostgres bool) {
	a.stopping.Store(true)
	if !stopPostgres && a.pg.Running() {
		a.detach(ctx)
		return
	}
	wasPrimary := a.pg.Running() && !a.standbyMode.Load()
	if a.pg.Running() {
		a.logger.Info("stopping postgres")
		if err := a.pg.Stop(ctx, pgctl.StopFast); err != nil {
			a.logger.Error("stop postgres", "error", err)
			a.pg.Kill()
		}
	}
	a.clearLease()
	st := a.log.State()
	me := fsm.NodeByName(st, a.cfg.Name)
	if wasPrimary && me != nil && st.Lease.GetHolderId() == me.Id && !a.pg.Running() {
		_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: me.Id, Term: st.Term, Reason: "the primary's sidecar is shutting down"}}}, 3*time.Second)
		if err != nil {
			a.logger.Warn("release lease", "error", err)
		} else {
			a.logger.Info("lease released", "term", st.Term)
		}
	}
}

// detach leaves the running Postgres under its guard for the next sidecar
// on this host (a restart or an upgrade): a primary holding a valid lease
// renews it once more first, so that the next sidecar has a whole lease to
// adopt it in, and arms the guard with it; then the guard is told this
// sidecar goes. The guard kills Postgres at that deadline unless the next
// sidecar renews before it (DESIGN.md, "Restarting the sidecar").
func (a *Keeper) detach(ctx context.Context) {
	st := a.log.State()
	if _, ok := a.holdsLease(st); ok && !a.standbyMode.Load() && a.leaseValid() {
		if a.renewOrRelease(ctx, st, true) == renewed {
			if err := a.armGuard(); err != nil {
				a.logger.Warn("postgres guard", "error", err)
			}
		}
	}
	a.lease.mu.Lock()
	left := a.lease.last.Sub(a.clk.Now())
	a.lease.mu.Unlock()
	a.pg.DetachGuard()
	if a.standbyMode.Load() {
		a.logger.Info("leaving the standby postgres running under its guard for the next sidecar")
	} else {
		a.logger.Info("leaving postgres running under its guard for the next sidecar: it is stopped at the lease deadline unless the next sidecar renews before", "deadline_in", left.Round(time.Millisecond))
	}
}

// adoptable asks the guard a previous sidecar may have left running
// about the postmaster on the data directory (nil: none to adopt).
func (a *Keeper) adoptable(ctx context.Context) *adoptable {
	pid := a.pg.ForeignPostmaster()
	if pid == 0 {
		return nil
	}
	gs, err := a.pg.GuardStatus(ctx)
	if err != nil {
		return nil
	}
	return &adoptable{PID: pid, GuardPID: gs.PID, Armed: gs.Armed, Term: gs.Term, InTime: gs.Armed && gs.Left() > 0}
}

// recordEvent commits an event, best effort, in the term it belongs to.
func (a *Keeper) recordEvent(ctx context.Context, typ string, ok bool, term uint64, details string) {
	me := a.self()
	if me == nil {
		return
	}
	if _, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: me.Id, Type: typ, Ok: ok, Term: term, Details: details}}}, 5*time.Second); err != nil {
		a.logger.Warn("record event", "type", typ, "error", err)
	}
}

// upstreamConninfo is how this node reaches the primary for replication
// (String for primary_conninfo and libpq tools, PgxConfig for pgx).
func (a *Keeper) upstreamConninfo(p *pb.Node, superuser bool) pgctl.Conninfo {
	pc := a.cfg.Postgres
	host, port := "", ""
	if addr := pgctl.ConninfoAddr(p.Conninfo); addr != "" {
		host, port, _ = net.SplitHostPort(addr)
	}
	kv := pgctl.Conninfo{
		"host": host, "port": port, "application_name": a.cfg.Name, "connect_timeout": "2",
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

func (a *Keeper) markExpectedStop() { a.expectedStop.Store(true) }

// expectStop consumes the mark left by markExpectedStop.
func (a *Keeper) expectStop() bool { return a.expectedStop.Swap(false) }

// currentUser is the OS user this sidecar runs as.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
