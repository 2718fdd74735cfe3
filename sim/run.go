package sim

import "github.com/hasidecar/hasidecar/fsm"

// Result is the outcome of one schedule.
type Result struct {
	Seed      uint64
	Violation *Violation
	Steps     int
	// Converge: how long after the last fault healed the cluster had
	// converged (-1: a violation ended the run first).
	Converge int64
	Acks     int
	Trace    []string
}

type client struct {
	s       *Sim
	target  int
	pending int // id of the write in flight, 0: none
}

func (c *client) loop() {
	c.s.w.after(worldProc, c.s.w.between(20*ms, 80*ms), func() {
		c.write()
		c.loop()
	})
}

func (c *client) next() { c.target = (c.target + 1) % c.s.cfg.data }

func (c *client) write() {
	if c.pending != 0 {
		return
	}
	s := c.s
	s.ackIDs++
	id := s.ackIDs
	c.pending = id
	h := s.hosts[c.target]
	done := func(ok bool) {
		if c.pending != id {
			return
		}
		c.pending = 0
		if !ok {
			c.next()
		}
	}
	s.w.after(h.pgProc, ms, func() {
		h.pg.write(id, func(uint64, tli) { s.w.after(worldProc, ms, func() { done(true) }) },
			func() { s.w.after(worldProc, ms, func() { done(false) }) })
	})
	s.w.after(worldProc, clientWriteTimeout, func() { done(false) })
}

// Options: a plant (or none), tracing, and the as-built order of a defect.
type Options struct {
	Plant string
	Trace bool
}

// Run plays one schedule to its end: a violation, or convergence after the
// faults healed, or the convergence bound.
func Run(sc *Schedule, o Options) Result {
	s := newSim(sc.Seed, sc, o)
	var healAt int64 = 2 * sec
	for _, f := range sc.Faults {
		f := f
		s.w.at(worldProc, f.At, func() { s.fire(f) })
		healAt = max(healAt, f.At+f.Dur)
	}
	healAt += ms
	s.w.at(worldProc, healAt, func() { s.healAll() })
	for range 2 {
		c := &client{s: s}
		c.loop()
	}
	res := Result{Seed: sc.Seed, Converge: -1}
	until := healAt + convergeBound
	var since int64 = -1
	nextPoll := healAt
	var lastT vtime = -1
	same := 0
	for s.violation == nil && s.w.step(until) {
		s.checkStep()
		if s.w.now == lastT {
			if same++; same > 200_000 {
				s.violate("livelock", "200000 events at the same virtual instant: something spins without time passing")
			}
		} else {
			lastT, same = s.w.now, 0
		}
		if s.w.now >= nextPoll {
			nextPoll = s.w.now + convergePollEvery
			if s.converged() {
				if since < 0 {
					since = s.w.now
				}
				if s.w.now-since >= convergeSettle {
					res.Converge = since - healAt
					break
				}
			} else {
				since = -1
			}
		}
	}
	if s.violation == nil && res.Converge < 0 {
		s.violate("no-convergence", "the faults healed at %.3fs and the cluster had not converged %ds later", float64(healAt)/1e9, convergeBound/sec)
	}
	if s.violation != nil && o.Trace {
		s.dump()
	}
	if s.violation == nil && sc.Sync {
		for _, h := range s.hosts {
			if h.pg != nil && h.pg.writable() {
				s.checkAcks(h.pg, "the primary at the end")
			}
		}
	}
	res.Violation, res.Steps, res.Acks, res.Trace = s.violation, s.w.steps, len(s.acks), s.log
	return res
}

// healAll ends every fault: links, delays, pauses, crashed sidecars.
func (s *Sim) healAll() {
	s.trace("heal all")
	s.net.heal()
	for i := range s.net.cut {
		for j := range s.net.cut[i] {
			s.net.cut[i][j] = 0
		}
	}
	for _, h := range s.hosts {
		s.w.thaw(h.sidecar)
		s.w.thaw(h.pgProc)
		s.w.thaw(h.guardProc)
		h.fsyncDelay, h.applyDelay, h.promoteDelay = 0, 200_000, 0
		if h.pg != nil {
			h.pg.stallUntil = 0
		}
		s.restartSidecar(h)
	}
}

// Shrink drops fault events while the schedule still fails with the same
// invariant, and returns the shortest failing schedule found.
func Shrink(sc *Schedule, o Options, name string) *Schedule {
	cur := sc
	for {
		improved := false
		for i := range cur.Faults {
			keep := append(append([]int(nil), cur.indices()[:i]...), cur.indices()[i+1:]...)
			cand := cur.Keep(keep)
			if r := Run(cand, o); r.Violation != nil && r.Violation.Name == name {
				cur, improved = cand, true
				break
			}
		}
		if !improved {
			return cur
		}
	}
}

// dump traces every host's state (replays with SIM_TRACE).
func (s *Sim) dump() {
	for _, h := range s.hosts {
		st := h.raft.State()
		prim := "none"
		if p := fsm.Primary(st); p != nil {
			prim = p.Name
		}
		r := h.raft
		s.trace("state %s: sidecar up %v raft role %d term %d leader %d commit %d applied %d last %d; fsm term %d primary %s lease serial %d",
			h.name, h.sidecarUp, r.role, r.term, r.leaderID, r.commit, r.applied, r.lastIndex(), st.Term, prim, st.GetLease().GetSerial())
		if p := h.pg; p != nil {
			s.trace("  pg %s: data %v running %v recovery %v signal %v tli %d/%d lsn %d upstream %d busy %q sync %v gate %v conninfo %q; keeper: %s",
				h.name, p.hasData, p.running, p.recovery, p.standbySignal, p.t.num, p.t.uid, p.lsn, p.upstream, p.busy, p.syncNames, p.gateNamed, p.connFile, keeperState(h))
		}
	}
}

func keeperState(h *Host) string {
	if h.keeperA == nil || h.keeperA.k == nil {
		return "none"
	}
	return h.keeperA.k.StateText()
}
