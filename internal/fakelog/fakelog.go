// Package fakelog is an in-memory replicated log for the actors' tests
// (node/keeper, node/leader): proposals are applied at once to a real
// fsm.Machine, in the caller's goroutine, and the lease's apply time is
// stamped from a Clock, as node/raftfsm.go does with the real one.
package fakelog

import (
	"context"
	"sync"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Log implements keeper.Log and leader.Log.
type Log struct {
	mu        sync.Mutex
	clk       clock.Clock
	m         *fsm.Machine
	idx       uint64
	changed   chan struct{}
	serial    uint64
	appliedAt time.Time
	proposed  []*pb.Command
	// fail, when set, is asked before each proposal: a non-nil error is
	// returned instead of applying (no leader, a timeout...).
	fail func(cmd *pb.Command) error
}

// New returns an empty log whose apply times come from clk.
func New(clk clock.Clock) *Log {
	return &Log{clk: clk, m: fsm.New(), changed: make(chan struct{}), appliedAt: clk.Now()}
}

// FailWith makes every later proposal ask f first (nil: apply them all).
func (l *Log) FailWith(f func(cmd *pb.Command) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = f
}

// TB is the part of testing.TB that MustApply uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// MustApply applies cmd and fails t when the FSM refuses it (test set-up).
func (l *Log) MustApply(t TB, cmd *pb.Command) {
	t.Helper()
	if r := l.Apply(cmd); r.Err != nil {
		t.Fatalf("apply %v: %v", cmd, r.Err)
	}
}

// Apply applies cmd directly (test set-up; not counted as a proposal).
func (l *Log) Apply(cmd *pb.Command) fsm.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applyLocked(cmd)
}

func (l *Log) applyLocked(cmd *pb.Command) fsm.Result {
	if cmd.AtUnixMs == 0 {
		cmd.AtUnixMs = l.clk.Now().UnixMilli()
	}
	l.idx++
	res := l.m.Apply(l.idx, cmd)
	if s := l.m.State().GetLease().GetSerial(); s != l.serial {
		l.serial, l.appliedAt = s, l.clk.Now()
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return res
}

// Proposed are the commands proposed so far (applied or refused), in order.
func (l *Log) Proposed() []*pb.Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*pb.Command(nil), l.proposed...)
}

// State is the latest applied state.
func (l *Log) State() *pb.ClusterState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.State()
}

// Changed is closed at the next apply.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Lease is the lease and when (Clock time) its serial was applied.
func (l *Log) Lease() (*pb.Lease, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m.State().GetLease(), l.appliedAt
}

// Propose applies cmd at once (or returns the injected failure). The
// failure function runs without the log's lock: it may apply commands
// itself (a renewal that gets in before the proposal).
func (l *Log) Propose(_ context.Context, cmd *pb.Command, _ time.Duration) (fsm.Result, error) {
	l.mu.Lock()
	l.proposed = append(l.proposed, cmd)
	fail := l.fail
	l.mu.Unlock()
	if fail != nil {
		if err := fail(cmd); err != nil {
			return fsm.Result{}, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.applyLocked(cmd)
	return res, res.Err
}

// WaitCaughtUp returns at once: this log is always caught up.
func (l *Log) WaitCaughtUp(context.Context) error { return nil }
