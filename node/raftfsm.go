package node

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// raftFSM adapts the pure fsm.Machine to raft.FSM and adds what only a node
// can know: the monotonic time at which it applied the latest lease renewal
// (DESIGN.md "Lease and fencing", point 4), and a broadcast to everyone
// waiting for the state to change.
type raftFSM struct {
	logger hclog.Logger

	mu      sync.Mutex
	m       *fsm.Machine
	st      *pb.ClusterState // copy of the state after the last apply; never mutated
	changed chan struct{}    // closed and replaced after every apply/restore
	// leaseSerial/leaseAppliedAt: the serial of the lease as last applied
	// here and this node's monotonic time when it applied it.
	leaseSerial    uint64
	leaseAppliedAt time.Time

	// fatal stops the process: Apply calls it for a committed entry it
	// cannot apply. It does not return in production (fatalExit); tests
	// swap it to record the message.
	fatal func(msg string, args ...any)
	// leader names the current raft leader (raft.LeaderWithID), set once
	// raft exists; nil before that.
	leaderMu sync.Mutex
	leader   func() (raft.ServerAddress, raft.ServerID)
	// onPromote, when set before raft starts, is told the reason of every
	// Promote command applied (the failover and switchover counters).
	onPromote func(reason string)
}

// exitUndecodable is the exit code after a committed entry that cannot be
// applied (EX_SOFTWARE).
const exitUndecodable = 70

func newRaftFSM(logger hclog.Logger) *raftFSM {
	m := fsm.New()
	f := &raftFSM{logger: logger, m: m, st: m.State(), changed: make(chan struct{}), leaseAppliedAt: time.Now()}
	f.fatal = func(msg string, args ...any) {
		logger.Error(msg, args...)
		os.Exit(exitUndecodable)
	}
	return f
}

// setLeaderFunc tells the FSM how to name the leader in its fatal message.
func (f *raftFSM) setLeaderFunc(leader func() (raft.ServerAddress, raft.ServerID)) {
	f.leaderMu.Lock()
	defer f.leaderMu.Unlock()
	f.leader = leader
}

// leaderName is the current leader's id (its address when the id is not
// known), or "unknown".
func (f *raftFSM) leaderName() string {
	f.leaderMu.Lock()
	leader := f.leader
	f.leaderMu.Unlock()
	if leader == nil {
		return "unknown"
	}
	addr, id := leader()
	switch {
	case id != "":
		return string(id)
	case addr != "":
		return string(addr)
	}
	return "unknown"
}

// Apply implements raft.FSM. A committed entry that cannot be decoded means
// a corrupt log or a member running another version: applying anything else
// in its place would make this node's state diverge from the others', so the
// process stops (f.fatal) with a message naming the entry and the leader,
// leaving the state as it was.
func (f *raftFSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := fsm.Decode(l.Data)
	if err != nil {
		leader := f.leaderName()
		f.fatal(fmt.Sprintf("cannot apply committed raft entry: index=%d term=%d leader=%s: %v; stopping: the state machine must not diverge. "+
			"This entry was committed by the leader named; check that every member runs the same hasidecar version", l.Index, l.Term, leader, err),
			"index", l.Index, "term", l.Term, "leader", leader, "bytes", len(l.Data))
		return fsm.Result{Index: l.Index, Err: fmt.Errorf("apply raft entry %d: %w", l.Index, err)}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.m.Apply(l.Index, cmd)
	f.publishLocked()
	if p := cmd.GetPromote(); p != nil && res.Err == nil && f.onPromote != nil {
		f.onPromote(p.Reason)
	}
	if res.Err != nil {
		f.logger.Debug("command rejected", "index", l.Index, "command", fmt.Sprintf("%T", cmd.Cmd), "error", res.Err)
	}
	return res
}

// publishLocked refreshes the state copy, notes a new lease serial and wakes
// the waiters.
func (f *raftFSM) publishLocked() {
	f.st = f.m.State()
	if s := f.st.GetLease().GetSerial(); s != f.leaseSerial {
		f.leaseSerial = s
		f.leaseAppliedAt = time.Now()
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// Snapshot implements raft.FSM: the encoding is done here, under the lock,
// so Persist only writes bytes.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := f.m.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{data: b}, nil
}

// Restore implements raft.FSM: all previous state is discarded. The lease is
// treated as renewed now, which can only delay a failover, never hasten it.
// A snapshot that cannot be read or decoded changes nothing (fsm.Machine's
// Restore replaces the state only once the whole snapshot has decoded): raft
// then keeps this node's state and reports the error (to the leader for an
// installed snapshot; at start it tries the next older snapshot).
func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read fsm snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.m.Restore(b); err != nil {
		return err
	}
	f.leaseSerial = 0 // force publishLocked to stamp the apply time
	f.publishLocked()
	return nil
}

// State returns the latest applied state. The caller must not modify it.
func (f *raftFSM) State() *pb.ClusterState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// Lease returns the lease as last applied and when this node applied it.
func (f *raftFSM) Lease() (*pb.Lease, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.GetLease(), f.leaseAppliedAt
}

// Changed returns a channel closed at the next apply or restore.
func (f *raftFSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

type fsmSnapshot struct{ data []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write fsm snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
