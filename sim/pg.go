package sim

import "slices"

// The model Postgres of one host: a WAL position on a timeline with its
// history, running or not, in recovery or writable, an upstream it streams
// from, synchronous_standby_names, the lease gate (in the guard process),
// commits waiting for the gate or a synchronous standby, and the latency of
// promote, stop, rewind and clone.

// tli is a timeline: the number Postgres gives it (old + 1) and an identity
// of its own, since two promotions from the same timeline (no WAL archive)
// make two different timelines with one number.
type tli struct {
	num uint32
	uid int
}

// tliEnd: the history of a timeline that was left at end.
type tliEnd struct {
	t   tli
	end uint64
}

type commitWait struct {
	id  int
	lsn uint64
	ack func(lsn uint64, t tli)
}

// PG is the model Postgres.
type PG struct {
	s *Sim
	h *Host

	hasData       bool
	running       bool
	recovery      bool
	standbySignal bool
	t             tli
	hist          []tliEnd
	lsn           uint64 // flush LSN (a standby: received and flushed)
	upstream      int    // primary_conninfo: host id, -1 none
	// syncNames: ANY syncK of these hosts; nil with gateNamed: the lease gate.
	syncNames []int
	syncK     int
	gateNamed bool
	// standbyFlush: what each standby reported flushed (on this primary).
	standbyFlush []uint64
	waiting      []commitWait
	stallUntil   vtime // receive stalls until then (a standby falling behind)
	lastRecv     int64 // host clock: last time it streamed from its upstream
	busy         string
	seenAt       []int64 // host clock: last flush report of each standby
	// Files and what is loaded: synchronous_standby_names and
	// primary_conninfo take effect at a start or a reload.
	syncFile, syncLoaded, connFile string
	wantUpstream                   int
	slots                          []string // the data directory's replication slots
	gen                            int      // incremented by every stop or crash
	guarded                        bool     // an arm line was written to the guard's pipe since (or before) this postmaster started
}

func newPG(s *Sim, h *Host) *PG {
	return &PG{s: s, h: h, upstream: -1, standbyFlush: make([]uint64, len(s.hosts))}
}

// contains: this Postgres's WAL holds position lsn of timeline t.
func (p *PG) contains(t tli, lsn uint64) bool {
	if p.t.uid == t.uid {
		return lsn <= p.lsn
	}
	for _, e := range p.hist {
		if e.t.uid == t.uid {
			return lsn <= e.end
		}
	}
	return false
}

// canFollow: a standby at (t, lsn) can stream from u without a rewind.
func (p *PG) canFollow(u *PG) bool {
	return u.hasData && u.contains(p.t, p.lsn)
}

func (p *PG) writable() bool { return p.running && !p.recovery }

func (p *PG) frozen() bool { return p.s.w.procs[p.h.pgProc].frozen }

// streamingFrom: p is connected to u as a WAL receiver right now.
func (p *PG) streamingFrom(u *PG) bool {
	return p.running && p.recovery && p.upstream == u.h.id && u.running && !p.frozen() && !u.frozen() &&
		p.s.net.up(u.h.id, p.h.id) && p.s.net.up(p.h.id, u.h.id) && p.canFollow(u) && p.s.w.now >= p.stallUntil
}

// gateOpen: the lease gate would answer now (it lives in the guard).
func (p *PG) gateOpen() bool {
	if p.s.cfg.plant == plantNoCommitGate {
		return true
	}
	g := p.h.guard
	return !p.s.w.procs[p.h.guardProc].frozen && g.armed && p.h.clock.Now() < g.deadline
}

// acceptsWrites: a commit issued now would be acknowledged (with
// synchronous_commit = on): the instance is writable, not frozen, and what
// it waits for on commit would answer.
func (p *PG) acceptsWrites() bool {
	if !p.writable() || p.frozen() {
		return false
	}
	if len(p.syncNames) > 0 {
		n := 0
		for _, id := range p.syncNames {
			if p.s.hosts[id].pg.streamingFrom(p) {
				n++
			}
		}
		return n >= p.ackCount()
	}
	if p.gateNamed {
		return p.gateOpen()
	}
	return true
}

// write is a client's INSERT and COMMIT arriving at this Postgres (in its
// own process: parked while the host is frozen).
func (p *PG) write(id int, ack func(lsn uint64, t tli), fail func()) {
	if !p.writable() {
		fail()
		return
	}
	p.lsn += uint64(64 + p.s.w.between(0, 4096))
	c := commitWait{id: id, lsn: p.lsn, ack: ack}
	p.waiting = append(p.waiting, c)
	p.stream()
	if len(p.syncNames) == 0 && p.gateNamed {
		// The gate is a replication client in the guard process on this
		// host: it answers each XLogData at once if the lease holds.
		lsn := p.lsn
		p.s.w.after(p.h.guardProc, 100_000, func() {
			if p.gateOpen() {
				p.s.w.after(p.h.pgProc, 50_000, func() { p.release(lsn) })
			}
		})
	} else if len(p.syncNames) == 0 {
		p.release(p.lsn)
	}
}

// release acknowledges the waiting commits up to lsn.
func (p *PG) release(lsn uint64) {
	if !p.writable() {
		return
	}
	k := 0
	for _, c := range p.waiting {
		if c.lsn <= lsn {
			p.s.noteAck(p, c)
			c.ack(c.lsn, p.t)
		} else {
			p.waiting[k] = c
			k++
		}
	}
	p.waiting = p.waiting[:k]
}

// stream sends the new WAL to every standby that follows this one.
func (p *PG) stream() {
	for _, o := range p.s.hosts {
		if o.pg != nil && o.pg.upstream == p.h.id && o.id != p.h.id {
			o.pg.pull()
		}
	}
}

// pull: the WAL receiver asks its upstream for WAL (one round trip).
func (p *PG) pull() {
	if !p.running || !p.recovery || p.upstream < 0 {
		return
	}
	u := p.s.hosts[p.upstream]
	me := p.h
	p.s.net.send(me.id, u.id, u.pgProc, func() {
		up := u.pg
		if !up.running || !up.hasData {
			return
		}
		lsn, t, hist := up.lsn, up.t, up.hist
		p.s.net.send(u.id, me.id, me.pgProc, func() { p.receive(up, lsn, t, hist) })
	})
}

func (p *PG) receive(u *PG, lsn uint64, t tli, hist []tliEnd) {
	if !p.running || !p.recovery || p.upstream != u.h.id || p.s.w.now < p.stallUntil {
		return
	}
	// Compatible with the upstream's history as it was when sent?
	ok := p.t.uid == t.uid && p.lsn <= lsn
	if !ok {
		for _, e := range hist {
			if e.t.uid == p.t.uid && p.lsn <= e.end {
				ok = true
			}
		}
	}
	if !ok {
		return
	}
	p.lastRecv = p.h.clock.Now()
	if lsn > p.lsn || t.uid != p.t.uid {
		p.lsn, p.t = lsn, t
		p.hist = append([]tliEnd(nil), hist...)
	}
	flushed, me := p.lsn, p.h
	reply := func() {
		p.s.net.send(me.id, u.h.id, u.h.pgProc, func() { u.onStandbyFlush(me.id, flushed, t) })
	}
	if me.fsyncDelay > 0 {
		p.s.w.after(me.pgProc, me.fsyncDelay, reply)
	} else {
		reply()
	}
}

func (p *PG) onStandbyFlush(from int, lsn uint64, t tli) {
	if t.uid != p.t.uid || !p.writable() {
		return
	}
	p.standbyFlush[from] = max(p.standbyFlush[from], lsn)
	if p.seenAt == nil {
		p.seenAt = make([]int64, len(p.s.hosts))
	}
	p.seenAt[from] = p.h.clock.Now()
	if slices.Contains(p.syncNames, from) {
		p.release(p.quorumFlush())
	}
}

// ackCount: how many named standbys must flush a commit (ANY k; the
// sync-count-minus-one plant reads it as k − 1).
func (p *PG) ackCount() int {
	k := max(p.syncK, 1)
	if p.s.cfg.plant == plantSyncCountMinusOne {
		k = max(k-1, 1)
	}
	return k
}

// quorumFlush: the position ackCount named standbys flushed (the k-th
// highest report); 0 when fewer reported.
func (p *PG) quorumFlush() uint64 {
	var fl []uint64
	for _, id := range p.syncNames {
		fl = append(fl, p.standbyFlush[id])
	}
	k := p.ackCount()
	if len(fl) < k {
		return 0
	}
	slices.Sort(fl)
	return fl[len(fl)-k]
}

// receiverLoop polls the upstream every 100 ms (WAL receiver reconnects,
// status messages).
func (p *PG) receiverLoop(inc uint64) {
	p.h.clock.After(p.h.pgProc, 100*ms, func() {
		if !p.running {
			return
		}
		p.pull()
		p.receiverLoop(inc)
	})
}

// crash: the postmaster and every backend die; waiting commits get errors.
func (p *PG) crash() {
	p.s.w.kill(p.h.pgProc)
	p.gen++
	p.running = false
	p.waiting = nil
	p.busy = ""
	p.s.trace("pg %s stopped/crashed", p.h.name)
	if a := p.h.keeperA; a != nil {
		p.s.w.after(p.h.sidecar, 0, a.onExit)
	}
}

func (p *PG) start(asStandby bool, upstream int) {
	p.running = true
	// A guard armed before the start (the keeper's start as primary) adopts
	// this postmaster at once, and kills it if its deadline already passed.
	g := p.h.guard
	p.guarded = g.piped
	if g.armed {
		p.h.clock.AtLocal(p.h.guardProc, max(g.deadline, p.h.clock.Now()), g.check)
	}
	p.recovery = asStandby
	p.standbySignal = asStandby
	p.upstream = -1
	if asStandby {
		p.upstream = upstream
	}
	for i := range p.standbyFlush {
		p.standbyFlush[i] = 0
	}
	p.lastRecv = p.h.clock.Now()
	p.receiverLoop(0)
	p.s.trace("pg %s started standby=%v upstream=%d tli=%d lsn=%d", p.h.name, asStandby, upstream, p.t.num, p.lsn)
}

// promote ends recovery on a new timeline.
func (p *PG) promote() {
	p.hist = append(append([]tliEnd(nil), p.hist...), tliEnd{t: p.t, end: p.lsn})
	p.s.nextUID++
	p.t = tli{num: p.t.num + 1, uid: p.s.nextUID}
	p.recovery, p.standbySignal, p.upstream = false, false, -1
	for i := range p.standbyFlush {
		p.standbyFlush[i] = 0
	}
	p.s.trace("pg %s promoted to tli %d at %d", p.h.name, p.t.num, p.lsn)
}

// lastSeen: how long ago (host clock) standby h last reported a flush.
func (p *PG) lastSeen(h int, now int64) int64 {
	if p.seenAt == nil || p.seenAt[h] == 0 {
		return 1 << 62
	}
	return now - p.seenAt[h]
}
