package sim

import (
	"context"
	"iter"
	"time"
)

// coro runs an actor's synchronous call (the real leader's Decide, which
// blocks in Log.Propose and Peers.LSNs) as a coroutine of the scheduler:
// the scheduler resumes it and waits until it blocks or returns, so exactly
// one thing runs at a time and the order is the scheduler's. A blocked
// coroutine is resumed by an event of its host's sidecar process (parked
// while the sidecar is frozen); a crash stops it.
type coro struct {
	// cancelStep ends the step's context: the sim's stand-in for a
	// deadline the step set with context.WithTimeout (see block).
	cancelStep func()
	expired    bool
	proc       procID
	next       func() (struct{}, bool)
	stop       func()
	yield      func(struct{}) bool
	running    bool
	done       bool
}

type coroStopped struct{}

// startCoro starts f as a coroutine of sidecar process p (cancel: its
// step's context, nil: none) and runs it until it first blocks.
func (s *Sim) startCoro(p procID, cancel context.CancelFunc, f func(c *coro)) *coro {
	c := &coro{proc: p}
	if cancel != nil {
		c.cancelStep = func() { c.expired = true; cancel() }
	}
	seq := func(yield func(struct{}) bool) {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(coroStopped); !ok {
					panic(r)
				}
			}
		}()
		c.yield = yield
		f(c)
	}
	c.next, c.stop = iter.Pull(seq)
	s.resume(c)
	return c
}

// resume runs c with s.cur naming it, so that the adapters' blocking calls
// know whom to suspend.
func (s *Sim) resume(c *coro) {
	prev, prevP := s.cur, s.curProc
	s.cur, s.curProc = c, c.proc
	c.resume()
	s.cur, s.curProc = prev, prevP
}

// block suspends the running coroutine until done() holds or ctx ended;
// callbacks wake it with wakeCo. A deadline on ctx (context.WithTimeout
// in the actor: wall-clock time, which barely moves while a schedule runs)
// is read as that much virtual time from when the sim first saw the ctx;
// when it passes, the step's own context is cancelled, which ends ctx and
// every context derived from the step's.
func (s *Sim) block(ctx context.Context, done func() bool) {
	c := s.cur
	if c == nil {
		panic("sim: a blocking call outside a coroutine")
	}
	vd, hasDL := s.deadlineOf(ctx)
	if hasDL {
		p := s.curProc
		s.w.at(worldProc, vd, func() { s.wakeCo(c, p) })
	}
	for !done() && ctx.Err() == nil {
		if hasDL && s.w.now >= vd {
			c.expire()
			return
		}
		c.block()
	}
}

// checkDeadline: a non-blocking call with a ctx whose virtual deadline
// passed ends the step's context.
func (s *Sim) checkDeadline(ctx context.Context) {
	if vd, ok := s.deadlineOf(ctx); ok && s.w.now >= vd && s.cur != nil {
		s.cur.expire()
	}
}

func (s *Sim) deadlineOf(ctx context.Context) (vtime, bool) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, false
	}
	if v, ok := s.vdl[ctx]; ok {
		return v, true
	}
	if s.vdl == nil {
		s.vdl = map[context.Context]vtime{}
	}
	// The wall time between the context's creation and now (microseconds)
	// must not leak into the schedule: round what is left to 50 ms (the
	// actors' timeouts are whole multiples of it).
	const q = int64(50 * time.Millisecond)
	rem := (int64(time.Until(d)) + q/2) / q * q
	v := s.w.now + rem
	s.vdl[ctx] = v
	return v, true
}

func (c *coro) expire() {
	if c.cancelStep != nil {
		c.cancelStep()
	}
}

// wakeCo resumes c in an event of process p (parked while p is frozen).
func (s *Sim) wakeCo(c *coro, p procID) {
	if c != nil && !c.done {
		s.w.after(p, 0, func() { s.resume(c) })
	}
}

// resume runs the coroutine until it blocks again or ends.
func (c *coro) resume() {
	if c.done || c.running {
		return
	}
	c.running = true
	_, ok := c.next()
	c.running = false
	if !ok {
		c.done = true
	}
}

// block suspends the coroutine until resume (called inside it only).
func (c *coro) block() {
	c.running = false
	if !c.yield(struct{}{}) {
		panic(coroStopped{})
	}
	c.running = true
}

// kill ends a blocked coroutine (its host's sidecar died).
func (c *coro) kill() {
	if !c.done {
		c.done = true
		c.stop()
	}
}

func (c *coro) stepCtxDone() bool { return c.expired }
