package keeper

import (
	"context"
	"sync"
)

// asideQueue holds the work the steps hand off so that they never wait for
// it: an event proposal, the release after a crash, the storage-failure
// check, the checkpoint after a promotion. Driven by steps, the tasks wait
// in order for Aside; under Run each starts at once in a goroutine of its
// own that Run joins before returning.
type asideQueue struct {
	mu      sync.Mutex
	pending []func(context.Context)
	// run, when set (by Run), starts a task instead of queueing it.
	run func(func(context.Context))
}

// goAside hands f off (see asideQueue).
func (a *Keeper) goAside(f func(ctx context.Context)) {
	q := &a.aside
	q.mu.Lock()
	run := q.run
	if run == nil {
		q.pending = append(q.pending, f)
	}
	q.mu.Unlock()
	if run != nil {
		run(f)
	}
}

// spawn makes every later task (and the ones pending) start at once in a
// goroutine joined on wg, under ctx.
func (q *asideQueue) spawn(ctx context.Context, wg *sync.WaitGroup) {
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	q.mu.Lock()
	pending := q.pending
	q.pending, q.run = nil, run
	q.mu.Unlock()
	for _, f := range pending {
		run(f)
	}
}

// stop makes later tasks wait in the queue again (Run is over: nothing
// would join their goroutines).
func (q *asideQueue) stop() {
	q.mu.Lock()
	q.run = nil
	q.mu.Unlock()
}

// Aside runs the tasks the steps queued aside, in the order they were
// queued (the tasks they queue in turn included), and reports how many ran.
// Under Run there is nothing to run: tasks start as they are queued.
func (a *Keeper) Aside(ctx context.Context) int {
	n := 0
	for {
		q := &a.aside
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.mu.Unlock()
			return n
		}
		f := q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()
		f(ctx)
		n++
	}
}
