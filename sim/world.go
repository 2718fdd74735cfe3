// Package sim is the deterministic simulator of issue 11: N sidecars, a
// model Raft carrying the real fsm package's commands, a model Postgres per
// host, clients and faults, all in one goroutine and virtual time. One
// seeded scheduler orders every event, so a seed replays bit for bit. See
// docs/SIMULATOR.md.
package sim

import (
	"math/rand/v2"
	"time"
)

// Virtual true time, in nanoseconds since the start of a schedule. Nodes
// never see it: they read their own drifting clock (Clock).
type vtime = int64

const (
	ms  = int64(time.Millisecond)
	sec = int64(time.Second)
)

// procID names a simulated process: each host runs a sidecar, a Postgres
// and a guard (the pgguard process: watchdog and lease gate); worldProc
// runs the network, the clients and the fault schedule and is never
// frozen.
type procID int

const worldProc procID = 0

type proc struct {
	frozen bool
	inc    uint64 // incarnation: a crash drops every event of the old one
	parked []event
}

type event struct {
	at  vtime
	seq uint64
	p   procID
	inc uint64
	fn  func()
}

// evHeap is a binary min-heap of events by (at, seq), by value: no
// allocation per event beyond its closure.
type evHeap []event

func (h evHeap) less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}

func (h *evHeap) push(e event) {
	*h = append(*h, e)
	q := *h
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (h *evHeap) pop() event {
	q := *h
	e := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = event{}
	q = q[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return e
}

// World is the scheduler: virtual time, the event queue ordered by (time,
// sequence) and the one PRNG every random choice comes from.
type World struct {
	now   vtime
	seq   uint64
	q     evHeap
	rng   *rand.Rand
	procs []*proc
	steps int
}

func newWorld(seed uint64) *World {
	w := &World{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	w.procs = append(w.procs, &proc{})
	return w
}

func (w *World) newProc() procID {
	w.procs = append(w.procs, &proc{})
	return procID(len(w.procs) - 1)
}

// at schedules fn for process p at true time t (not before now).
func (w *World) at(p procID, t vtime, fn func()) {
	if t < w.now {
		t = w.now
	}
	w.seq++
	w.q.push(event{at: t, seq: w.seq, p: p, inc: w.procs[p].inc, fn: fn})
}

func (w *World) after(p procID, d int64, fn func()) { w.at(p, w.now+d, fn) }

// step runs the next event; false when the queue is empty or past until.
func (w *World) step(until vtime) bool {
	for len(w.q) > 0 {
		e := w.q[0]
		if e.at > until {
			return false
		}
		w.q.pop()
		w.now = e.at
		pr := w.procs[e.p]
		if e.inc != pr.inc {
			continue // the process crashed or restarted since
		}
		if pr.frozen {
			pr.parked = append(pr.parked, e)
			continue
		}
		w.steps++
		e.fn()
		return true
	}
	return false
}

func (w *World) freeze(p procID) { w.procs[p].frozen = true }

// thaw re-queues the parked events at now, in their original order.
func (w *World) thaw(p procID) {
	pr := w.procs[p]
	if !pr.frozen {
		return
	}
	pr.frozen = false
	parked := pr.parked
	pr.parked = nil
	for _, e := range parked {
		w.seq++
		e.seq = w.seq
		if e.at < w.now {
			e.at = w.now
		}
		w.q.push(e)
	}
}

// kill ends the incarnation: pending events of p are dropped.
func (w *World) kill(p procID) {
	pr := w.procs[p]
	pr.inc++
	pr.parked = nil
	pr.frozen = false
}

func (w *World) chance(p float64) bool { return p > 0 && w.rng.Float64() < p }

// between returns a uniform duration in [lo, hi].
func (w *World) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + w.rng.Int64N(hi-lo+1)
}

// Clock is a host's monotonic clock: it runs at 1+ppm/1e6 of true time from
// an arbitrary origin, so that clocks on two hosts differ in rate by up to
// the configured drift margin.
type Clock struct {
	w    *World
	base int64
	ppm  int64
}

// Now is the host's monotonic time.
func (c *Clock) Now() int64 { return c.local(c.w.now) }

func (c *Clock) local(t vtime) int64 { return c.base + t + t*c.ppm/1_000_000 }

// trueAt is the first true time at which the clock reads at least l.
func (c *Clock) trueAt(l int64) vtime {
	d := l - c.base
	t := d * 1_000_000 / (1_000_000 + c.ppm)
	for c.local(t) < l {
		t++
	}
	return t
}

// After runs fn in process p once d has passed on this clock.
func (c *Clock) After(p procID, d int64, fn func()) { c.w.at(p, c.trueAt(c.Now()+d), fn) }

// AtLocal runs fn in process p when this clock reads l.
func (c *Clock) AtLocal(p procID, l int64, fn func()) { c.w.at(p, c.trueAt(l), fn) }
