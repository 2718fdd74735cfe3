package sim

import "iter"

// coro runs an actor's synchronous call (the real leader's Decide, which
// blocks in Log.Propose and Peers.LSNs) as a coroutine of the scheduler:
// the scheduler resumes it and waits until it blocks or returns, so exactly
// one thing runs at a time and the order is the scheduler's. A blocked
// coroutine is resumed by an event of its host's sidecar process (parked
// while the sidecar is frozen); a crash stops it.
type coro struct {
	next    func() (struct{}, bool)
	stop    func()
	yield   func(struct{}) bool
	running bool
	done    bool
}

type coroStopped struct{}

// startCoro starts f as a coroutine and runs it until it first blocks.
func (s *Sim) startCoro(f func(c *coro)) *coro {
	c := &coro{}
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
	prev := s.cur
	s.cur = c
	c.resume()
	s.cur = prev
}

// block suspends the running coroutine until done() holds or ctx ended;
// callbacks wake it with wakeCo.
func (s *Sim) block(ctx interface{ Err() error }, done func() bool) {
	c := s.cur
	if c == nil {
		panic("sim: a blocking call outside a coroutine")
	}
	for !done() && ctx.Err() == nil {
		c.block()
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
