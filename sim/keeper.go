package sim

import (
	"slices"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Keeper is the in-sim driver of a data node's local side, written after
// node/lease.go (renewal, leaseValid, release), node/pgagent.go's watchdog
// and guardTick, node/plan.go (the reconciler table) and node/sync.go (the
// synchronous set), against the model Raft and the model Postgres. It is a
// model of the product's keeper, not the product's code: until the keeper
// is steppable behind interfaces (node/keeper), the simulator cannot run
// the real one. Every decision it acts on is read from the real FSM state.
type Keeper struct {
	s *Sim
	h *Host

	leaseTerm      uint64
	deadline, last int64 // host clock; deadline 0: no valid lease
	renewing       bool
	renewedTerm    uint64
	crashedAt      int64
	wasRunning     bool
	expectStop     bool
	busy           bool
	plantTerm      uint64 // promote-before-commit plant: a decision seen when proposed
	syncBusy       bool
	narrowed       []int // sync mode: members taken out of Postgres's list first
	termStart      int64
	needRewind     bool
}

const (
	leaseDur         = 4 * sec
	fenceMarginDur   = 500 * ms
	monitorEvery     = 1 * sec
	restartTimeout   = 10 * sec
	watchdogEvery    = 50 * ms
	walSenderTimeout = 10 * sec
)

func (k *Keeper) r() *Raft { return k.h.raft }

func (k *Keeper) now() int64 { return k.h.clock.Now() }

func (k *Keeper) start() {
	k.wasRunning = k.h.pg.running
	k.renewLoop()
	k.watchdogLoop()
	k.reconcileLoop()
}

func (k *Keeper) me(st *pb.ClusterState) *pb.Node { return fsm.NodeByID(st, k.h.nodeID) }

func (k *Keeper) holdsLease(st *pb.ClusterState) (*pb.Node, bool) {
	me := k.me(st)
	if me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return me, false
	}
	l := st.GetLease()
	return me, l.GetHolderId() == me.Id && l.GetTerm() == st.Term
}

func (k *Keeper) leaseValid() bool {
	return k.deadline != 0 && k.now() < k.deadline-fenceMarginDur && k.leaseTerm == k.r().State().Term
}

func (k *Keeper) renewLoop() {
	k.renew()
	k.h.clock.After(k.h.sidecar, leaseDur/3, k.renewLoop)
}

// renew is renewOrRelease: t_send noted before proposing; the deadline is
// t_send + lease once the renewal commits.
func (k *Keeper) renew() {
	st := k.r().State()
	me, ok := k.holdsLease(st)
	if !ok {
		k.deadline = 0
		return
	}
	if k.renewing {
		return
	}
	pg := k.h.pg
	if !pg.running {
		if k.crashedAt != 0 && k.now()-k.crashedAt >= restartTimeout {
			k.release(st, me, "postgres crashed and did not restart within postgres.restart_timeout")
			return
		}
	}
	tSend := k.now()
	cmd := &pb.RenewLease{NodeId: me.Id, Term: st.Term, FlushLsn: pg.lsn, Timeline: pg.t.num, DurationMs: leaseDur / ms}
	if pg.recovery && st.Lease.GetTimeline() != 0 {
		cmd.Timeline = st.Lease.GetTimeline()
	}
	k.renewing = true
	term := st.Term
	k.r().Propose(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: cmd}}, leaseDur/3, func(res fsm.Result, err error) {
		k.renewing = false
		switch {
		case err != nil:
			k.h.clock.After(k.h.sidecar, 50*ms, k.renew)
		case res.Err != nil:
			k.deadline = 0
		default:
			if k.leaseTerm != term || k.deadline < tSend+leaseDur {
				k.leaseTerm, k.deadline = term, tSend+leaseDur
				k.last = k.deadline
			}
			k.step()
		}
	})
}

func (k *Keeper) release(st *pb.ClusterState, me *pb.Node, reason string) {
	if st.Lease.GetReleased() {
		return
	}
	k.deadline = 0
	if k.h.pg.running {
		return
	}
	k.r().Propose(&pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: me.Id, Term: st.Term, Reason: reason}}}, 2*sec, func(fsm.Result, error) {})
}

func (k *Keeper) watchdogLoop() {
	k.watchdog()
	k.h.clock.After(k.h.sidecar, watchdogEvery, k.watchdogLoop)
}

func (k *Keeper) watchdog() {
	pg := k.h.pg
	if k.wasRunning && !pg.running && !k.expectStop && k.crashedAt == 0 {
		k.crashedAt = k.now()
	}
	if pg.running {
		k.expectStop, k.crashedAt = false, 0
	}
	k.wasRunning = pg.running
	k.guardTick()
	if pg.running && !pg.recovery && !k.leaseValid() {
		k.fence("the lease is not held or about to expire")
	}
}

// guardTick tells the guard process the latest deadline ever granted, less
// 100 ms (node/guard.go), or disarms it while Postgres runs as a standby.
func (k *Keeper) guardTick() {
	pg := k.h.pg
	g := k.h.guard
	if !pg.running {
		return
	}
	armed := !pg.recovery
	dl := k.last - 100*ms
	if k.last == 0 {
		dl = k.now() - 100*ms
	}
	if armed == g.armed && (!armed || dl == g.deadline) {
		return
	}
	k.s.w.after(k.h.guardProc, 20_000, func() { g.set(armed, dl) })
}

// fence: a fast stop, every backend terminated at once.
func (k *Keeper) fence(why string) {
	pg := k.h.pg
	if !pg.running || pg.busy == "stop" {
		return
	}
	if k.s.cfg.plant == plantNoFence {
		return // planted: the watchdog never stops Postgres
	}
	k.s.trace("%s fences: %s", k.h.name, why)
	k.stopPG()
}

func (k *Keeper) stopPG() {
	pg := k.h.pg
	pg.busy = "stop"
	k.expectStop = true
	k.s.w.after(k.h.pgProc, k.s.w.between(5*ms, 40*ms), func() {
		pg.crash()
		k.s.w.after(k.h.sidecar, 0, k.step)
	})
}

func (k *Keeper) reconcileLoop() {
	k.step()
	k.h.clock.After(k.h.sidecar, monitorEvery, k.reconcileLoop)
}

// onChange: the FSM changed on this node.
func (k *Keeper) onChange() {
	st := k.r().State()
	if _, ok := k.holdsLease(st); ok && k.renewedTerm != st.Term {
		k.renewedTerm = st.Term
		k.termStart = k.now()
		k.renew() // renewNow after a promotion decision
	}
	k.watchdog()
	k.step()
}

// step is one reconciler pass (plan + execute).
func (k *Keeper) step() {
	if k.busy || !k.h.sidecarUp {
		return
	}
	st := k.r().State()
	me := k.me(st)
	if me == nil {
		return
	}
	pg := k.h.pg
	if pg.busy != "" {
		return
	}
	if k.plantTerm > st.Term && pg.running && pg.recovery {
		// Planted: promote on a decision seen when proposed.
		t := k.plantTerm
		k.plantTerm = 0
		k.promote(t)
		return
	}
	prim := fsm.Primary(st)
	if prim != nil && prim.Id == me.Id {
		k.planPrimary(st)
		return
	}
	k.planStandby(st, me, prim)
}

func (k *Keeper) syncSetting(st *pb.ClusterState) ([]int, bool) {
	var names []int
	if st.Settings.GetSynchronous() {
		for _, id := range st.SyncStandbys {
			h := int(id) - 1
			if id != k.h.nodeID && !slices.Contains(k.narrowed, h) {
				names = append(names, h)
			}
		}
	}
	return names, len(names) == 0 && !k.s.cfg.noGate
}

func (k *Keeper) configure(st *pb.ClusterState) {
	pg := k.h.pg
	pg.syncNames, pg.gateNamed = k.syncSetting(st)
}

func (k *Keeper) planPrimary(st *pb.ClusterState) {
	pg := k.h.pg
	if !k.leaseValid() {
		if pg.writable() {
			k.fence("fencing: the lease is not held")
		}
		return
	}
	switch {
	case !pg.running:
		if !pg.hasData {
			return
		}
		k.configure(st)
		k.startPG(pg.standbySignal, -1)
	case pg.recovery:
		if lt := st.Lease.GetTimeline(); lt != 0 && pg.t.num != lt {
			return // refusing to promote: another timeline
		}
		k.configure(st)
		k.promote(st.Term)
	default:
		k.configure(st)
		if st.Settings.GetSynchronous() {
			k.manageSync(st)
		}
	}
}

func (k *Keeper) startPG(asStandby bool, upstream int) {
	pg := k.h.pg
	pg.busy = "start"
	k.s.w.after(k.h.pgProc, k.s.w.between(100*ms, 400*ms), func() {
		pg.busy = ""
		pg.start(asStandby, upstream)
		k.s.w.after(k.h.sidecar, 0, k.step)
	})
}

func (k *Keeper) promote(term uint64) {
	pg := k.h.pg
	pg.busy = "promote"
	k.s.promoteStart(k.h, term)
	d := k.s.w.between(50*ms, 300*ms) + k.h.promoteDelay
	k.s.w.after(k.h.pgProc, d, func() {
		pg.busy = ""
		if !pg.running || !pg.recovery {
			return
		}
		pg.promote()
		k.s.promoted(k.h, term)
		k.s.w.after(k.h.sidecar, 0, k.step)
	})
}

func (k *Keeper) planStandby(st *pb.ClusterState, me, prim *pb.Node) {
	pg := k.h.pg
	k.narrowed = nil
	if pg.writable() {
		k.fence("Postgres is writable but another node is the primary")
		return
	}
	if prim == nil {
		return
	}
	up := k.s.hosts[prim.Id-1]
	k.configure(st)
	switch {
	case !pg.hasData:
		k.copyFrom(up, "clone", k.s.w.between(1*sec, 3*sec))
	case !pg.running && (!pg.standbySignal || k.needRewind):
		k.needRewind = false
		k.copyFrom(up, "rewind", k.s.w.between(300*ms, 1500*ms))
	case !pg.running:
		k.startPG(true, up.id)
	case pg.upstream != up.id:
		pg.upstream = up.id // primary_conninfo rewritten, reload
		pg.lastRecv = k.now()
	case k.now()-pg.lastRecv > 3*sec && up.pg.running && !pg.canFollow(up.pg):
		// Not streaming: the histories diverged. Stop, rewind, start.
		k.needRewind = true
		k.stopPG()
	default:
		if me.Role != pb.NodeRole_NODE_ROLE_STANDBY || me.UpstreamId != prim.Id || !me.Active {
			ev := fsm.EventStandbyFollow
			if !me.Active {
				ev = fsm.EventNodeRejoin
			}
			if k.now()-pg.lastRecv < 500*ms && !k.busy {
				k.busy = true
				cmd := &pb.SetStandby{NodeId: me.Id, UpstreamId: prim.Id, Term: st.Term, EventType: ev}
				k.r().Propose(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: cmd}}, 2*sec, func(fsm.Result, error) { k.busy = false })
			}
		}
	}
}

// copyFrom: pg_rewind or pg_basebackup from the primary, then start.
func (k *Keeper) copyFrom(up *Host, what string, d int64) {
	pg := k.h.pg
	pg.busy = what
	src, me := up, k.h
	k.s.trace("%s starts %s from %s", me.name, what, src.name)
	k.s.net.send(me.id, src.id, src.pgProc, func() {
		if !src.pg.running || src.pg.recovery {
			k.s.net.send(src.id, me.id, me.sidecar, func() { pg.busy = ""; k.s.w.after(me.sidecar, 500*ms, k.step) })
			return
		}
		k.s.w.after(src.pgProc, d, func() {
			sp := src.pg
			t, hist, lsn := sp.t, sp.hist, sp.lsn
			k.s.net.send(src.id, me.id, me.pgProc, func() {
				pg.busy = ""
				if pg.running {
					return
				}
				pg.hasData, pg.t, pg.hist, pg.lsn, pg.standbySignal = true, t, append([]tliEnd(nil), hist...), lsn, true
				k.s.trace("%s %s from %s: tli %d lsn %d", me.name, what, src.name, t.num, lsn)
				k.startPG(true, src.id)
			})
		})
	})
	// A copy that never answers (a partition) is given up after 10 s.
	k.s.w.after(me.sidecar, 10*sec, func() {
		if pg.busy == what {
			pg.busy = ""
			k.step()
		}
	})
}

// manageSync widens and narrows the committed synchronous set
// (node/sync.go): widen the FSM first, narrow Postgres first.
func (k *Keeper) manageSync(st *pb.ClusterState) {
	if k.syncBusy {
		return
	}
	pg := k.h.pg
	me := k.h.nodeID
	now := k.now()
	set := st.SyncStandbys
	// pg_stat_replication shows a walsender until the connection breaks:
	// at once when the standby's Postgres dies (a reset), else after
	// wal_sender_timeout (10 s, pgctl/config.go) without an answer.
	streaming := func(h int) bool {
		o := k.s.hosts[h]
		return o.pg != nil && o.pg.running && pg.lastSeen(h, now) < walSenderTimeout
	}
	fresh := func(h int) bool { return pg.lastSeen(h, now) < 500*ms }
	var add []uint32
	for _, o := range k.s.hosts {
		if o.pg == nil || o.nodeID == me || slices.Contains(set, o.nodeID) {
			continue
		}
		if fresh(o.id) && pg.standbyFlush[o.id] >= pg.lsn {
			add = append(add, o.nodeID)
		}
	}
	if len(add) > 0 {
		k.proposeSync(st, append(slices.Clone(set), add...))
		return
	}
	grace := max(2*leaseDur, 5*sec)
	if now-k.termStart < grace {
		return
	}
	var keep []uint32
	var gone []int
	for _, id := range set {
		if streaming(int(id) - 1) {
			keep = append(keep, id)
		} else {
			gone = append(gone, int(id)-1)
		}
	}
	if len(gone) == 0 {
		return
	}
	if len(keep) == 0 && !k.s.cfg.asBuiltSyncNarrow {
		// The last members leave: commit the empty set first, and only
		// then let Postgres commit through the gate (asynchronously).
		// node/sync.go narrows Postgres first here too, which lets an
		// isolated primary acknowledge writes that no member holds while
		// the FSM still names a member a failover may promote
		// (docs/SIMULATOR.md, "Defects found"; SIM_AS_BUILT=sync-narrow
		// plays the product's order).
		k.s.trace("%s empties the synchronous set: %v leave (FSM first)", k.h.name, gone)
		k.proposeSync(st, nil)
		return
	}
	for _, g := range gone {
		if !slices.Contains(k.narrowed, g) {
			k.narrowed = append(k.narrowed, g)
		}
	}
	k.s.trace("%s narrows the synchronous set: %v leave, %v stay", k.h.name, gone, keep)
	k.configure(st) // Postgres first
	covered := len(keep) == 0
	for _, id := range keep {
		if pg.standbyFlush[int(id)-1] >= pg.lsn {
			covered = true
		}
	}
	if covered {
		k.proposeSync(st, keep)
	}
}

func (k *Keeper) proposeSync(st *pb.ClusterState, ids []uint32) {
	k.syncBusy = true
	cmd := &pb.SetSyncStandbys{Term: st.Term, PrimaryId: k.h.nodeID, NodeIds: ids}
	k.r().Propose(&pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: cmd}}, 2*sec, func(res fsm.Result, err error) {
		k.syncBusy = false
		if err == nil && res.Err == nil {
			k.narrowed = nil
			k.configure(k.r().State())
		}
	})
}

// lsnAnswer is PeerService.LSN: this node's Postgres status, asked by the
// leader before it chooses a candidate.
func (k *Keeper) lsnAnswer() *lsnAnswer {
	pg := k.h.pg
	if !pg.running || pg.frozen() {
		return &lsnAnswer{}
	}
	return &lsnAnswer{healthy: true, running: true, recovery: pg.recovery, lsn: pg.lsn, tli: pg.t.num}
}

// Guard is the pgguard process: it kills Postgres once the deadline it was
// given passes on the host's clock, and its lease gate answers commits only
// before that deadline (pg.gateOpen).
type Guard struct {
	s        *Sim
	h        *Host
	armed    bool
	deadline int64
}

func (g *Guard) set(armed bool, dl int64) {
	g.armed, g.deadline = armed, dl
	if armed {
		g.h.clock.AtLocal(g.h.guardProc, dl, g.check)
	}
}

func (g *Guard) check() {
	pg := g.h.pg
	if !g.armed || g.h.clock.Now() < g.deadline || !pg.running || pg.recovery {
		return
	}
	if g.s.cfg.plant == plantNoFence {
		return // planted: nothing stops Postgres
	}
	g.s.trace("%s guard kills postgres", g.h.name)
	g.armed = false
	pg.crash()
}

type lsnAnswer struct {
	healthy, running, recovery bool
	lsn                        uint64
	tli                        uint32
}

const maxLagOnFailover = 16 << 20
