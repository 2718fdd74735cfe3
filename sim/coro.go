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

func startCoro(f func(c *coro)) *coro {
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
	c.resume()
	return c
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
