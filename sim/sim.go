package sim

import (
	"context"
	"fmt"
	"strings"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Plants: deliberate bugs, switched on by SIM_PLANT, that the simulator
// must catch. They live only in this package (see docs/SIMULATOR.md).
const (
	plantNone          = ""
	plantNoDriftMargin = "no-drift-margin"
	plantPromoteEarly  = "promote-before-commit"
	plantNoFence       = "no-fence"
	plantNoCommitGate  = "no-commit-gate"
	// plantSyncCountMinusOne: the model Postgres acknowledges a commit
	// once k − 1 named standbys flushed it (ANY k read as ANY k − 1, at
	// least 1): with k = 2 the failover's n − k + 1 answers may all lack it.
	plantSyncCountMinusOne = "sync-count-minus-one"
	convergeBound          = 30 * sec
	faultWindowEnd         = 25 * sec
	defaultDriftPercent    = 10
	clientWriteTimeout     = 1 * sec
	convergePollEvery      = 250 * ms
	convergeSettle         = 2 * sec
)

// Plants lists the plants SIM_PLANT accepts.
var Plants = []string{plantNoDriftMargin, plantPromoteEarly, plantNoFence, plantNoCommitGate, plantSyncCountMinusOne}

type simConfig struct {
	plant        string
	driftPercent int
	data         int  // data nodes; one witness besides
	sync         bool // synchronous mode
	noGate       bool // postgres.disable_lease_gate
	trace        bool
}

// Host is one machine: a sidecar (Raft, keeper, leader), its Postgres and
// guard (none on the witness), a clock.
type Host struct {
	id                         int
	name                       string
	nodeID                     uint32
	data                       bool
	clock                      *Clock
	sidecar, pgProc, guardProc procID
	raft                       *Raft
	pg                         *PG
	keeperA                    *keeperActor
	leader                     *leaderActor
	guard                      *Guard
	sidecarUp                  bool
	applyDelay, fsyncDelay     int64
	promoteDelay               int64
	keeperStarts               uint64 // keepers made on this host so far (their answer nonces)
}

type ackRec struct {
	id   int
	t    tli
	lsn  uint64
	host int
}

// Violation is a broken invariant.
type Violation struct {
	Name   string
	At     vtime
	Detail string
}

func (v *Violation) String() string {
	return fmt.Sprintf("violation %s at %.3fs: %s", v.Name, float64(v.At)/1e9, v.Detail)
}

// Sim is one schedule's world.
type Sim struct {
	cfg   simConfig
	w     *World
	net   *Net
	hosts []*Host
	sched *Schedule

	nextUID       int
	committed     map[uint64]uint64 // index → term of the committed entry
	promoteCommit map[uint64]uint32 // term → node of the committed Promote
	promotedIn    map[uint64]int    // term → host promoted
	lastPromoTerm uint64
	fsmTerm       []uint64
	raftTerm      []uint64
	acks          []ackRec
	ackIDs        int
	violation     *Violation
	log           []string
	cur           *coro // the coroutine running now, if any
	overlays      []*overlay
	vdl           map[context.Context]vtime // virtual deadlines of contexts (coro.go)
	curProc       procID                    // the sidecar process of the running coroutine
}

func (s *Sim) trace(f string, a ...any) {
	if s.cfg.trace {
		s.log = append(s.log, fmt.Sprintf("%9.3f ", float64(s.w.now)/1e9)+fmt.Sprintf(f, a...))
	}
}

func (s *Sim) violate(name, f string, a ...any) {
	if s.violation == nil {
		s.violation = &Violation{Name: name, At: s.w.now, Detail: fmt.Sprintf(f, a...)}
		s.trace("VIOLATION %s", s.violation)
	}
}

func newSim(seed uint64, sc *Schedule, o Options) *Sim {
	s := &Sim{sched: sc, w: newWorld(seed), committed: map[uint64]uint64{}, promoteCommit: map[uint64]uint32{}, promotedIn: map[uint64]int{}}
	s.cfg = simConfig{plant: o.Plant, driftPercent: defaultDriftPercent, data: sc.Data, sync: sc.Sync, noGate: sc.NoGate, trace: o.Trace}
	n := sc.Data + 1
	s.net = newNet(s.w, n)
	s.fsmTerm, s.raftTerm = make([]uint64, n), make([]uint64, n)
	var initial []*pb.Command
	initial = append(initial, &pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "sim",
		Settings: &pb.Settings{Synchronous: sc.Sync, SynchronousCount: int32(sc.Count), SynchronousStrict: sc.Sync && sc.Strict, LeaseMs: leaseDur / ms, MaximumLagOnFailover: maxLagOnFailover}}}})
	for i := range n {
		h := &Host{id: i, nodeID: uint32(i + 1), data: i < sc.Data}
		h.name = fmt.Sprintf("pg%d", i+1)
		kind := pb.NodeKind_NODE_KIND_DATA
		if !h.data {
			h.name, kind = "witness", pb.NodeKind_NODE_KIND_WITNESS
		}
		h.clock = &Clock{w: s.w, base: int64(i+1) * 1000 * sec, ppm: sc.DriftPPM[i]}
		h.sidecar = s.w.newProc()
		h.pgProc = s.w.newProc()
		h.guardProc = s.w.newProc()
		h.applyDelay = 200_000
		s.hosts = append(s.hosts, h)
		initial = append(initial, &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{Name: h.name, Kind: kind,
			Priority: 100, Voter: true, ClusterName: "sim", RaftAddress: h.name + ":7000", GrpcAddress: h.name + ":7001", Conninfo: "host=" + h.name + " port=5432"}}})
	}
	initial = append(initial,
		&pb.Command{Cmd: &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{SystemIdentifier: 42}}},
		&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: leaseDur / ms}}})
	var members []uint32
	for i := 1; i < sc.Data; i++ {
		initial = append(initial, &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: uint32(i + 1), UpstreamId: 1, Term: 1}}})
		members = append(members, uint32(i+1))
	}
	if sc.Sync {
		initial = append(initial, &pb.Command{Cmd: &pb.Command_SetSyncQuorum{SetSyncQuorum: &pb.SetSyncQuorum{Term: 1, PrimaryId: 1, NodeIds: members, Count: uint32(max(sc.Count, 1))}}})
	}
	s.nextUID = 1
	s.overlays = make([]*overlay, n)
	for i := range s.overlays {
		s.overlays[i] = &overlay{}
	}
	for _, h := range s.hosts {
		h.raft = newRaft(s, h, initial)
		h.guard = &Guard{s: s, h: h}
		if h.data {
			// Bootstrapped, stopped: the keepers start them (Postgres
			// runs as the sidecar's child).
			h.pg = newPG(s, h)
			h.pg.hasData = true
			h.pg.t = tli{num: 1, uid: 1}
			h.pg.standbySignal = h.id != 0
		}
	}
	// Raft-level commit of the bootstrap entries, known to all.
	for i := range initial {
		s.committed[uint64(i+1)] = 1
	}
	for _, h := range s.hosts {
		s.startSidecar(h, uint64(len(initial)))
	}
	return s
}

func (s *Sim) startSidecar(h *Host, commit uint64) {
	h.sidecarUp = true
	s.fsmTerm[h.id] = 0 // a restarted node replays from an empty state
	h.leader = &leaderActor{s: s, h: h}
	h.raft.onApply = func(idx uint64, cmd *pb.Command, res fsm.Result) { s.onApplied(h, idx, cmd, res) }
	h.raft.onChange = func() {
		if h.keeperA != nil {
			h.keeperA.onChange()
		}
		h.leader.step()
	}
	h.raft.start(commit)
	if h.data {
		h.keeperA = &keeperActor{s: s, h: h}
		h.keeperA.start()
	}
	h.leader.start()
}

// crashSidecar: the process dies; its Postgres dies with it (parent-death
// signal, and the guard kills it when its pipe closes).
func (s *Sim) crashSidecar(h *Host) {
	s.trace("crash sidecar %s", h.name)
	s.w.kill(h.sidecar)
	h.sidecarUp = false
	h.leader.crash()
	if h.keeperA != nil {
		h.keeperA.crash()
	}
	if h.pg != nil {
		if h.pg.running {
			h.pg.crash()
		}
		h.pg.busy = "" // an action of the dead sidecar (pg_rewind, clone) dies with it
		h.pg.gen++     // and so does a start or promotion it was waiting for
		s.w.kill(h.pgProc)
	}
	s.w.kill(h.guardProc)
	h.guard.armed, h.guard.piped = false, false
}

func (s *Sim) restartSidecar(h *Host) {
	if h.sidecarUp {
		return
	}
	s.trace("restart sidecar %s", h.name)
	s.startSidecar(h, 0)
}

// ---- invariant hooks ----

func (s *Sim) checkTerm(h *Host, term uint64) {
	if term < s.raftTerm[h.id] {
		s.violate("term-backwards", "%s raft term %d after %d", h.name, term, s.raftTerm[h.id])
	}
	s.raftTerm[h.id] = term
}

func (s *Sim) checkFSMTerm(h *Host, term uint64) {
	if term < s.fsmTerm[h.id] {
		s.violate("term-backwards", "%s applied term %d after %d", h.name, term, s.fsmTerm[h.id])
	}
	s.fsmTerm[h.id] = term
}

func (s *Sim) noteCommit(r *Raft, idx uint64) {
	for i := idx; i > 0; i-- {
		t, ok := s.committed[i]
		e := r.log[i]
		if ok {
			if t != e.term {
				s.violate("raft-commit-diverged", "index %d committed in term %d and %d", i, t, e.term)
			}
			break
		}
		s.committed[i] = e.term
	}
}

// onApplied: a replica applied a committed entry (Apply is deterministic:
// every replica's verdict is the same).
func (s *Sim) onApplied(h *Host, idx uint64, cmd *pb.Command, res fsm.Result) {
	if p := cmd.GetPromote(); p != nil && res.Err == nil {
		s.promoteCommit[p.Term] = p.NodeId
	}
}

// proposed: a command was appended to the leader's log (not committed).
func (s *Sim) proposed(r *Raft, cmd *pb.Command) {
	if p := cmd.GetPromote(); p != nil && s.cfg.plant == plantPromoteEarly {
		s.plantPromote(p)
	}
}

func (s *Sim) promoteStart(h *Host, term uint64) {
	if s.promoteCommit[term] != h.nodeID {
		s.violate("promote-before-commit", "%s promotes in term %d, and no committed decision names it", h.name, term)
	}
}

func (s *Sim) promoted(h *Host, term uint64) {
	if o, ok := s.promotedIn[term]; ok {
		s.violate("double-promotion", "%s promoted in term %d, %s already did", h.name, term, s.hosts[o].name)
	}
	if term < s.lastPromoTerm {
		s.violate("term-backwards", "%s promoted in term %d after a promotion in term %d", h.name, term, s.lastPromoTerm)
	}
	s.promotedIn[term] = h.id
	s.lastPromoTerm = max(s.lastPromoTerm, term)
	if s.cfg.sync {
		s.checkAcks(h.pg, "promoted in term "+fmt.Sprint(term))
	}
}

func (s *Sim) noteAck(p *PG, c commitWait) {
	s.acks = append(s.acks, ackRec{id: c.id, t: p.t, lsn: c.lsn, host: p.h.id})
}

// checkAcks: every acknowledged write is in p's history (synchronous mode).
func (s *Sim) checkAcks(p *PG, when string) {
	for _, a := range s.acks {
		if !p.contains(a.t, a.lsn) {
			s.violate("lost-acked-write", "write %d acknowledged by %s at tli %d lsn %d is not in the history of %s (%s, tli %d lsn %d)",
				a.id, s.hosts[a.host].name, a.t.num, a.lsn, p.h.name, when, p.t.num, p.lsn)
			return
		}
	}
}

// checkStep runs after every event.
func (s *Sim) checkStep() {
	var w []string
	for _, h := range s.hosts {
		if h.pg != nil && h.pg.acceptsWrites() {
			w = append(w, h.name)
			if !h.pg.guarded {
				s.violate("unguarded-writable", "%s accepts writes but its guard was not told a deadline before or since its postmaster started", h.name)
			}
		}
	}
	if len(w) > 1 {
		s.violate("two-writable", "%s accept writes at the same instant", strings.Join(w, " and "))
	}
}

// converged: one primary (the FSM's, writable), every other data node a
// running standby streaming from it on its timeline, and Raft has a leader.
func (s *Sim) converged() bool {
	var prim *Host
	for _, h := range s.hosts {
		if h.pg != nil && h.pg.writable() {
			if prim != nil {
				return false
			}
			prim = h
		}
	}
	if prim == nil || !prim.pg.acceptsWrites() {
		return false
	}
	lead := false
	for _, h := range s.hosts {
		if h.raft.IsLeader() {
			lead = true
		}
		st := h.raft.State()
		if p := fsm.Primary(st); p == nil || p.Id != prim.nodeID {
			return false
		}
		if h.pg == nil || h == prim {
			continue
		}
		if !h.pg.streamingFrom(prim.pg) || h.pg.t.uid != prim.pg.t.uid {
			return false
		}
	}
	return lead
}
