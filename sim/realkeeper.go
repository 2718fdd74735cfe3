package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/node/keeper"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// keeperActor runs the product's keeper (node/keeper) on a sim data host:
// a keeper.Keeper per sidecar incarnation, driven like keeper.Run drives
// it — Reconcile (every monitor interval, at once after a change of the
// local state, on every apply and on a Postgres exit), RenewLease (when it
// asks, and on every apply), WatchdogTick (when it asks, on every apply, on an exit and after each
// Reconcile and RenewLease) and
// Aside after each — each step in a coroutine of its own, so that a step
// blocked in a long call (pg_rewind, a proposal) does not hold up the
// others, as the product's goroutines do not. pgIO is the sim's
// keeper.Postgres over the model Postgres, simLeaderIO its Log, Peers and
// Clock.
type keeperActor struct {
	s                            *Sim
	h                            *Host
	k                            *keeper.Keeper
	io                           *simLeaderIO
	pgio                         *pgIO
	ctx                          context.Context
	stop                         context.CancelFunc
	ready                        bool
	threads                      []*kThread
	reconcile, lease, dog, aside *kThread
}

type kThread struct {
	a      *keeperActor
	name   string
	co     *coro // one coroutine for the thread's life: a step, then idle
	idle   bool  // the coroutine waits for the next kick
	again  bool
	wakeAt int64
	step   func(ctx context.Context) int64 // the next due time (host clock), -1: none
}

func (t *kThread) kick() {
	a := t.a
	if !a.ready || a.k == nil {
		return
	}
	switch {
	case t.co == nil || t.co.done:
		t.co = a.s.startCoro(a.h.sidecar, func() {}, t.loop)
	case t.idle:
		t.idle = false
		a.s.resume(t.co)
	default:
		t.again = true // a step runs: another one after it
	}
}

// loop runs a step per kick.
func (t *kThread) loop(c *coro) {
	a := t.a
	for {
		t.again = false
		ctx, cancel := context.WithCancel(a.ctx)
		c.expired = false
		c.cancelStep = func() { c.expired = true; cancel() }
		next := t.step(ctx)
		cancel()
		a.s.w.after(a.h.sidecar, 0, func() { t.finished(next) })
		t.idle = true
		c.block()
		t.idle = false
	}
}

func (t *kThread) finished(next int64) {
	if t.again {
		t.kick()
		return
	}
	if next >= 0 && next != t.wakeAt {
		t.wakeAt = next
		t.a.h.clock.AtLocal(t.a.h.sidecar, next, func() {
			if t.wakeAt == next {
				t.kick()
			}
		})
	}
}

func nodeConfig(s *Sim, h *Host) *config.Config {
	return &config.Config{
		Name: h.name,
		Postgres: &config.PostgresConfig{
			DataDir: "/sim/" + h.name + "/data", Host: h.name, Port: 5432, SocketDir: "/sim/" + h.name + "/run",
			OSUser: "postgres", Superuser: "postgres", ReplicationUser: "replicator", AuthMethod: "trust",
			RestartTimeout: config.Duration(restartTimeout), DisableLeaseGate: s.cfg.noGate,
			// The model's Postgres dies with its sidecar: no adoption.
			StopOnExit: true,
		},
		Timing: config.TimingConfig{MonitorInterval: config.Duration(monitorEvery), Lease: config.Duration(leaseDur), DriftMarginPercent: s.cfg.driftPercent},
	}
}

// start makes the keeper of a (re)started sidecar: it waits until this
// node caught up with the leader (Log.WaitCaughtUp), then runs the steps.
func (a *keeperActor) start() {
	var lg hclog.Logger
	if a.s.cfg.trace {
		lg = hclog.New(&hclog.LoggerOptions{Name: "keeper " + a.h.name, Output: traceWriter{a.s}, DisableTime: true, Level: hclog.Info})
	}
	a.io = &simLeaderIO{s: a.s, h: a.h, overlay: a.s.overlays[a.h.id]}
	a.pgio = &pgIO{s: a.s, h: a.h, a: a}
	// Answer tokens unique per host and incarnation, as the product's
	// random nonce makes them, without a draw from the seeded source.
	a.h.keeperStarts++
	nonce := uint64(a.h.id+1)<<48 | a.h.keeperStarts<<32
	k, err := keeper.New(keeper.Config{Node: nodeConfig(a.s, a.h), Logger: lg, Clock: a.io, Started: a.io.Now(), AnswerNonce: nonce}, a.io, a.pgio, a.io)
	if err != nil {
		panic(err)
	}
	a.k = k
	a.ctx, a.stop = context.WithCancel(context.Background())
	every := func(d int64) int64 { return a.h.clock.Now() + d }
	a.reconcile = &kThread{a: a, name: "reconcile", step: func(ctx context.Context) int64 {
		changed := k.Reconcile(ctx)
		a.aside.kick()
		a.dog.kick() // Run's reconciler pokes the watchdog after an action
		if changed {
			return a.h.clock.Now()
		}
		return every(monitorEvery)
	}}
	a.lease = &kThread{a: a, name: "lease", step: func(ctx context.Context) int64 {
		next := k.RenewLease(ctx)
		a.aside.kick()
		a.dog.kick() // Run's lease keeper pokes the watchdog after a renewal
		return next.UnixNano()
	}}
	a.dog = &kThread{a: a, name: "watchdog", step: func(ctx context.Context) int64 {
		next := k.WatchdogTick(ctx)
		a.aside.kick()
		return next.UnixNano()
	}}
	a.aside = &kThread{a: a, name: "aside", step: func(ctx context.Context) int64 {
		k.Aside(ctx)
		return -1
	}}
	a.threads = []*kThread{a.reconcile, a.lease, a.dog, a.aside}
	a.waitCaughtUp()
}

// waitCaughtUp: Log.WaitCaughtUp, polled every 20 ms.
func (a *keeperActor) waitCaughtUp() {
	r := a.h.raft
	if r.leaderID >= 0 && r.applied == r.commit && r.applied > 0 && fsm.NodeByName(r.State(), a.h.name) != nil {
		a.ready = true
		for _, t := range a.threads {
			t.kick()
		}
		return
	}
	a.h.clock.After(a.h.sidecar, 20*ms, a.waitCaughtUp)
}

// onChange: an apply (Log.Changed) wakes the reconciler, the lease keeper
// and the watchdog.
func (a *keeperActor) onChange() {
	if a.ready {
		a.reconcile.kick()
		a.lease.kick()
		a.dog.kick()
	}
}

// onExit: the postmaster exited (Postgres.Exited).
func (a *keeperActor) onExit() {
	if a.ready {
		a.dog.kick()
		a.reconcile.kick()
	}
}

func (a *keeperActor) crash() {
	if a.stop != nil {
		a.stop()
	}
	for _, t := range a.threads {
		if t.co != nil {
			t.co.kill()
		}
	}
	a.k, a.ready = nil, false
}

// ---- the sim's keeper.Postgres ----

// pgIO is keeper.Postgres over the model Postgres: files (the managed
// settings, primary_conninfo, standby.signal) are written at once and take
// effect at a start or a reload, as in Postgres; start, stop, promote,
// rewind and clone take their latency in virtual time.
type pgIO struct {
	s *Sim
	h *Host
	a *keeperActor
}

func (p *pgIO) pg() *PG { return p.h.pg }

func (p *pgIO) Options() pgctl.Options {
	return pgctl.Options{DataDir: "/sim/" + p.h.name + "/data", Port: 5432, SocketDir: "/sim/" + p.h.name + "/run", Superuser: "postgres", OSUser: "postgres"}
}
func (p *pgIO) PrepareDirs(context.Context) error   { return nil }
func (p *pgIO) CheckPortFree(context.Context) error { return nil }

// ForeignPostmaster: the model has no postmaster outside the keeper's control.
func (p *pgIO) ForeignPostmaster() int { return 0 }
func (p *pgIO) InspectDataDir(context.Context) (pgctl.DataDirState, error) {
	if p.pg().hasData {
		return pgctl.DataDirValid, nil
	}
	return pgctl.DataDirMissing, nil
}
func (p *pgIO) ControlData(context.Context) (*pgctl.ControlData, error) {
	g := p.pg()
	if !g.hasData {
		return nil, errors.New("sim: no data directory")
	}
	return &pgctl.ControlData{SystemIdentifier: simSysID, State: pgctl.StateShutDown, TimelineID: g.t.num, CheckpointLSN: g.lsn}, nil
}

// ReadControlFile: the sim runs no switchover (its only caller), so
// nothing reads pg_control directly.
func (p *pgIO) ReadControlFile() (*pgctl.ControlFile, error) {
	return nil, errors.New("sim: no pg_control")
}
func (p *pgIO) IsStandbySignal() bool { return p.pg().standbySignal }
func (p *pgIO) SetStandbySignal(on bool) (bool, error) {
	g := p.pg()
	ch := g.standbySignal != on
	g.standbySignal = on
	return ch, nil
}
func (p *pgIO) DiskSpace() (pgctl.DiskSpace, error) {
	return pgctl.DiskSpace{Data: pgctl.FSSpace{Free: 50 << 30, Total: 100 << 30}}, nil
}
func (p *pgIO) InitDB(context.Context, pgctl.InitOptions) error {
	return errors.New("sim: the cluster is bootstrapped, no initdb")
}

// hostOf names the host a conninfo points at.
func (p *pgIO) hostOf(c string) *Host {
	addr := pgctl.ConninfoAddr(c)
	name, _, _ := strings.Cut(addr, ":")
	for _, h := range p.s.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// copyFrom is pg_basebackup or pg_rewind from src over the model network.
func (p *pgIO) copyFrom(ctx context.Context, src *Host, d int64, rewind bool) error {
	s, me, g := p.s, p.h, p.pg()
	if src == nil || src.pg == nil {
		return errors.New("sim: no such source")
	}
	c := s.cur
	var err error
	done := false
	finish := func(e error) {
		if !done {
			err, done = e, true
			s.wakeCo(c, me.sidecar)
		}
	}
	g.busy = "copy"
	connected := false
	s.net.send(me.id, src.id, src.pgProc, func() {
		sp := src.pg
		if !sp.running {
			s.net.send(src.id, me.id, me.sidecar, func() { finish(errors.New("sim: the source does not answer")) })
			return
		}
		if rewind && sp.t.num == g.t.num && sp.t.uid != g.t.uid {
			s.net.send(src.id, me.id, me.sidecar, func() { finish(fmt.Errorf("pg_rewind: %w (%w)", pgctl.ErrSameTimeline, pgctl.ErrRewindImpossible)) })
			return
		}
		s.net.send(src.id, me.id, me.sidecar, func() { connected = true })
		s.w.after(src.pgProc, d, func() {
			t, hist, lsn := sp.t, append([]tliEnd(nil), sp.hist...), sp.lsn
			s.net.send(src.id, me.id, me.pgProc, func() {
				if done || g.running {
					return
				}
				g.hasData, g.t, g.hist, g.lsn = true, t, hist, lsn
				s.trace("%s %s from %s: tli %d lsn %d", me.name, map[bool]string{true: "rewind", false: "clone"}[rewind], src.name, t.num, lsn)
				finish(nil)
			})
		})
	})
	// connect_timeout=2 in the conninfo; once connected, keepalives
	// (idle 2 s, 3 probes 1 s apart) end a connection that went silent.
	me.clock.After(me.sidecar, 2*sec, func() {
		if !connected {
			finish(errors.New("sim: connect timeout"))
		}
	})
	me.clock.After(me.sidecar, d+5*sec+2*sec, func() { finish(errors.New("sim: connection to the source lost")) })
	s.block(ctx, func() bool { return done })
	g.busy = ""
	if !done {
		return ctx.Err()
	}
	return err
}

func (p *pgIO) BaseBackup(ctx context.Context, source pgctl.Conninfo, _, _ string) error {
	return p.copyFrom(ctx, p.hostOf(source.String()), p.s.w.between(sec, 3*sec), false)
}

func (p *pgIO) Rewind(ctx context.Context, source pgctl.Conninfo, _ string) error {
	if p.pg().running {
		return errors.New("sim: postgres runs")
	}
	return p.copyFrom(ctx, p.hostOf(source.String()), p.s.w.between(300*ms, 1500*ms), true)
}

func (p *pgIO) RemoveDataDir(context.Context) (pgctl.SetAside, error) {
	p.pg().hasData = false
	return pgctl.SetAside{Path: "/sim/" + p.h.name + "/data.aside"}, nil
}

func (p *pgIO) WriteManagedConfig(_ context.Context, settings map[string]string) (bool, error) {
	g := p.pg()
	v := settings["synchronous_standby_names"]
	ch := g.syncFile != v
	g.syncFile = v
	return ch, nil
}
func (p *pgIO) WriteHBA(context.Context, pgctl.HBAConfig) (bool, error) { return false, nil }
func (p *pgIO) SetRecovery(_ context.Context, conninfo, slot string) (bool, error) {
	g := p.pg()
	ch := g.connFile != conninfo
	g.connFile = conninfo
	return ch, nil
}
func (p *pgIO) WritePassfile(string, []pgctl.PassEntry) error { return nil }
func (p *pgIO) Running() bool                                 { return p.pg().running }
func (p *pgIO) Exited() <-chan struct{}                       { return make(chan struct{}) }

// load puts the files into effect (a start or a reload).
func (p *pgIO) load() {
	g := p.pg()
	g.syncLoaded = g.syncFile
	g.syncNames, g.syncK, g.gateNamed = parseSyncNames(p.s, g.syncFile)
	up := -1
	if h := p.hostOf(g.connFile); h != nil && g.connFile != "" {
		up = h.id
	}
	if g.running && g.recovery && up != g.upstream {
		g.upstream = up
		g.lastRecv = p.h.clock.Now()
	}
	g.wantUpstream = up
}

func parseSyncNames(s *Sim, v string) ([]int, int, bool) {
	if v == pgctl.GateApplicationName {
		return nil, 0, true
	}
	var out []int
	for _, h := range s.hosts {
		if h.pg != nil && strings.Contains(v, `"`+h.name+`"`) {
			out = append(out, h.id)
		}
	}
	k := 1
	if rest, ok := strings.CutPrefix(v, "ANY "); ok {
		if _, err := fmt.Sscanf(rest, "%d", &k); err != nil || k < 1 {
			k = 1
		}
	}
	return out, k, false
}

func (p *pgIO) Start(ctx context.Context) error {
	g, s := p.pg(), p.s
	if g.running {
		return errors.New("sim: already running")
	}
	if !g.hasData {
		return errors.New("sim: no data directory")
	}
	c := s.cur
	done := false
	g.busy = "start"
	gen := g.gen
	// The timers of start, stop and promote run in the world process, so
	// that a crash of the model Postgres meanwhile cannot lose them.
	s.w.after(worldProc, s.w.between(100*ms, 400*ms), func() {
		done = true
		s.wakeCo(c, p.h.sidecar)
		if g.gen != gen || g.running {
			return
		}
		g.busy = ""
		p.load()
		g.start(g.standbySignal, g.wantUpstream)
	})
	s.block(ctx, func() bool { return done })
	if !done {
		return ctx.Err()
	}
	if !g.running {
		return errors.New("sim: postgres exited while starting")
	}
	return nil
}

// plantedNoFence: with no-fence, a stop of a writable Postgres (a fence:
// nothing else stops a running primary in the sim) does nothing.
func (p *pgIO) plantedNoFence() bool {
	return p.s.cfg.plant == plantNoFence && p.pg().writable()
}

func (p *pgIO) Stop(ctx context.Context, mode pgctl.StopMode) error {
	g, s := p.pg(), p.s
	if !g.running {
		return nil
	}
	planted := p.plantedNoFence()
	c := s.cur
	done := false
	s.w.after(worldProc, s.w.between(5*ms, 40*ms), func() {
		if g.running && !planted {
			g.crash()
		}
		done = true
		s.wakeCo(c, p.h.sidecar)
	})
	s.block(ctx, func() bool { return done })
	return nil
}

func (p *pgIO) Kill() {
	if p.plantedNoFence() {
		return
	}
	if p.pg().running {
		p.pg().crash()
	}
}

func (p *pgIO) Reload(context.Context) error {
	if !p.pg().running {
		return errors.New("sim: not running")
	}
	p.load()
	return nil
}

func (p *pgIO) Promote(ctx context.Context) error {
	g, s := p.pg(), p.s
	if !g.running || !g.recovery {
		return errors.New("sim: not a running standby")
	}
	term := p.a.io.State().Term
	s.promoteStart(p.h, term)
	c := s.cur
	done := false
	g.busy = "promote"
	gen := g.gen
	s.w.after(worldProc, s.w.between(50*ms, 300*ms)+p.h.promoteDelay, func() {
		g.busy = ""
		if g.gen == gen && g.running && g.recovery {
			g.promote()
			s.promoted(p.h, term)
		}
		done = true
		s.wakeCo(c, p.h.sidecar)
	})
	s.block(ctx, func() bool { return done })
	if !g.writable() {
		return errors.New("sim: promotion did not finish")
	}
	return nil
}

func (p *pgIO) Checkpoint(context.Context) error { return nil }

func (p *pgIO) Status(ctx context.Context) (*pgctl.Status, error) {
	p.s.checkDeadline(ctx)
	g := p.pg()
	if !g.running {
		return &pgctl.Status{}, nil
	}
	st := &pgctl.Status{Running: true, InRecovery: g.recovery, Timeline: g.t.num, SystemIdentifier: simSysID,
		CurrentLSN: g.lsn, FlushLSN: g.lsn}
	now := p.h.clock.Now()
	if g.recovery {
		st.ReceiveLSN, st.ReplayLSN = g.lsn, g.lsn
		if g.upstream >= 0 && now-g.lastRecv < 500*ms {
			st.WalReceiverStatus = "streaming"
			st.UpstreamConninfo = g.connFile
		}
		return st, nil
	}
	for _, o := range p.s.hosts {
		if o.pg == nil || o == p.h {
			continue
		}
		// pg_stat_replication: a walsender until the connection breaks (at
		// once when the standby's Postgres died, else wal_sender_timeout).
		if g.lastSeen(o.id, now) < walSenderTimeout && o.pg.running && o.pg.upstream == p.h.id {
			sync := "async"
			if slices.Contains(g.syncNames, o.id) {
				sync = "quorum"
			}
			st.Replication = append(st.Replication, pgctl.ReplicationRow{ApplicationName: o.name, State: "streaming",
				FlushLSN: g.standbyFlush[o.id], WriteLSN: g.standbyFlush[o.id], ReplayLSN: g.standbyFlush[o.id], SyncState: sync})
		}
	}
	return st, nil
}

func (p *pgIO) CurrentSetting(ctx context.Context, name string) (string, error) {
	p.s.checkDeadline(ctx)
	if !p.pg().running {
		return "", errors.New("sim: not running")
	}
	if name == "synchronous_standby_names" {
		return p.pg().syncLoaded, nil
	}
	return "", fmt.Errorf("sim: setting %s not modelled", name)
}
func (p *pgIO) EnsureRole(context.Context, string, bool, string) error { return nil }
func (p *pgIO) ListSlots(context.Context) ([]pgctl.Slot, error) {
	var out []pgctl.Slot
	for _, n := range p.pg().slots {
		out = append(out, pgctl.Slot{Name: n})
	}
	return out, nil
}
func (p *pgIO) EnsureSlot(_ context.Context, name string) (bool, error) {
	g := p.pg()
	if slices.Contains(g.slots, name) {
		return false, nil
	}
	g.slots = append(g.slots, name)
	return true, nil
}
func (p *pgIO) DropSlot(_ context.Context, name string) (bool, error) {
	g := p.pg()
	n := len(g.slots)
	g.slots = slices.DeleteFunc(g.slots, func(x string) bool { return x == name })
	return len(g.slots) != n, nil
}
func (p *pgIO) SwitchoverMarker() (uint64, uint64, bool) { return 0, 0, false }
func (p *pgIO) SetSwitchoverMarker(uint64, uint64) error { return nil }
func (p *pgIO) StartGuard() error                        { return nil }

// UpdateGuardDeadline tells the guard process (over its pipe) the deadline.
func (p *pgIO) UpdateGuardDeadline(deadline time.Time, _ uint64) error {
	g := p.h.guard
	armed := !deadline.IsZero()
	dl := deadline.UnixNano()
	g.piped = armed
	if pg := p.h.pg; armed && pg.running {
		pg.guarded = true
	}
	if armed == g.armed && (!armed || dl == g.deadline) {
		return nil
	}
	p.s.w.after(p.h.guardProc, 20_000, func() { g.set(armed, dl) })
	return nil
}

// The model has no guard left by a previous sidecar (postgres.stop_on_exit).
func (p *pgIO) GuardStatus(context.Context) (pgctl.GuardStatus, error) {
	return pgctl.GuardStatus{}, pgctl.ErrNoGuard
}
func (p *pgIO) AdoptGuard(context.Context, int) (pgctl.GuardStatus, error) {
	return pgctl.GuardStatus{}, pgctl.ErrNoGuard
}
func (p *pgIO) Adopt(int) error { return pgctl.ErrNoGuard }
func (p *pgIO) DetachGuard()    {}

func (p *pgIO) StopGuard() {
	g := p.h.guard
	g.piped = false
	if g.armed {
		p.s.w.after(p.h.guardProc, 20_000, func() { g.set(false, 0) })
	}
}

// ---- what only the keeper asks of the peers ----

// EnsureSlot: the sim's Postgres has no slots; the primary's sidecar must answer.
func (io *simLeaderIO) EnsureSlot(ctx context.Context, primary *pb.Node, _ string, _ uint64, timeout time.Duration) error {
	s, me := io.s, io.h
	o := s.hosts[primary.Id-1]
	c := s.cur
	var err error
	done := false
	s.net.send(me.id, o.id, o.sidecar, func() {
		ok := o.pg != nil && o.pg.writable()
		s.net.send(o.id, me.id, me.sidecar, func() {
			if !done {
				done = true
				if !ok {
					err = errors.New(o.name + " is not the primary")
				}
				s.wakeCo(c, me.sidecar)
			}
		})
	})
	me.clock.After(me.sidecar, int64(timeout), func() {
		if !done {
			done, err = true, errors.New("sim: EnsureSlot timed out")
			s.wakeCo(c, me.sidecar)
		}
	})
	s.block(ctx, func() bool { return done })
	return err
}

// PostgresAnswers: node's Postgres accepts TCP connections (no wait: the
// model knows at once).
func (io *simLeaderIO) PostgresAnswers(node *pb.Node, _ time.Duration) bool {
	o := io.s.hosts[node.Id-1]
	return o.pg != nil && o.pg.running && !o.pg.frozen() && io.s.net.up(io.h.id, o.id) && io.s.net.up(o.id, io.h.id)
}

// WaitCaughtUp is not called: keeperActor.waitCaughtUp does its work.
func (io *simLeaderIO) WaitCaughtUp(context.Context) error { return nil }

// ---- the promote-before-commit plant ----

// overlay is what the promote-before-commit plant shows a candidate: the
// state with the Promote applied when the leader appended it, and every
// proposal of the candidate "committed" on top, until its own replica has
// applied that term for real.
type overlay struct {
	m    *fsm.Machine
	st   *pb.ClusterState
	term uint64
	idx  uint64
}

func (o *overlay) active(h *Host) bool { return o.m != nil && h.raft.State().Term < o.term }

func (o *overlay) propose(cmd *pb.Command) (fsm.Result, error) {
	o.idx++
	res := o.m.Apply(o.idx, cmd)
	o.st = o.m.State()
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// plantPromote builds the overlay for the candidate of p.
func (s *Sim) plantPromote(p *pb.Promote) {
	h := s.hosts[p.NodeId-1]
	o := s.overlays[h.id]
	if o == nil || h.raft.m == nil {
		return
	}
	b, err := h.raft.m.Snapshot()
	if err != nil {
		return
	}
	m := fsm.New()
	if m.Restore(b) != nil {
		return
	}
	idx := h.raft.applied + 1000
	if res := m.Apply(idx, &pb.Command{Cmd: &pb.Command_Promote{Promote: p}}); res.Err != nil {
		return
	}
	o.m, o.st, o.term, o.idx = m, m.State(), p.Term, idx
	s.w.after(h.sidecar, 0, func() {
		if h.keeperA != nil {
			h.keeperA.onChange()
		}
	})
}
