// Package clock is the time source of the keeper and the leader
// (node/keeper, node/leader): the real monotonic clock in production, a
// manual one in tests and in the simulator, so that an actor driven by its
// Step methods reads no wall time and never sleeps on its own.
package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock is monotonic time, timers and sleeps.
type Clock interface {
	// Now is the current time; only differences between two Nows matter.
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
	// Sleep waits d, or until ctx ends (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// Real is the system's monotonic clock.
type Real struct{}

// Now is time.Now (it carries the monotonic reading).
func (Real) Now() time.Time { return time.Now() }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Sleep waits d or until ctx ends.
func (Real) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Manual is a clock that moves only when told (Advance, Set) — and by
// Sleep, which advances it by the time slept instead of blocking, so that
// code that sleeps runs on in one goroutine. Timers from After fire, in
// deadline order (ties in creation order), when the clock reaches them. It
// is safe for concurrent use.
type Manual struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []manualTimer
}

type manualTimer struct {
	at  time.Time
	seq uint64
	ch  chan time.Time
}

// NewManual returns a manual clock reading start.
func NewManual(start time.Time) *Manual { return &Manual{now: start} }

// Now is the manual time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// After returns a channel (buffered, so firing never blocks) that receives
// the time once the clock has advanced by d; d <= 0 fires at once.
func (m *Manual) After(d time.Duration) <-chan time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- m.now
		return ch
	}
	m.seq++
	m.timers = append(m.timers, manualTimer{at: m.now.Add(d), seq: m.seq, ch: ch})
	return ch
}

// Sleep advances the clock by d (firing the timers it passes) and returns
// at once; ctx.Err() when ctx has already ended.
func (m *Manual) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.Advance(d)
	return nil
}

// Advance moves the clock forward by d and fires the timers now due.
func (m *Manual) Advance(d time.Duration) {
	if d < 0 {
		d = 0
	}
	m.mu.Lock()
	m.setLocked(m.now.Add(d))
	m.mu.Unlock()
}

// Set moves the clock to t (never backwards) and fires the timers now due.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	if t.After(m.now) {
		m.setLocked(t)
	}
	m.mu.Unlock()
}

// NextTimer is the deadline of the earliest pending timer (ok false: none).
func (m *Manual) NextTimer() (at time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.timers) == 0 {
		return time.Time{}, false
	}
	m.sortLocked()
	return m.timers[0].at, true
}

func (m *Manual) sortLocked() {
	sort.Slice(m.timers, func(i, j int) bool {
		if !m.timers[i].at.Equal(m.timers[j].at) {
			return m.timers[i].at.Before(m.timers[j].at)
		}
		return m.timers[i].seq < m.timers[j].seq
	})
}

func (m *Manual) setLocked(t time.Time) {
	m.now = t
	m.sortLocked()
	keep := m.timers[:0]
	for _, tm := range m.timers {
		if !tm.at.After(t) {
			tm.ch <- tm.at
			continue
		}
		keep = append(keep, tm)
	}
	m.timers = keep
}
