package sim

import (
	"errors"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The model Raft: terms, pre-vote and vote, a log replicated by
// AppendEntries over the model network, commit on a majority of acks in the
// leader's term, and per-node apply. Every node applies committed entries
// with the real fsm.Machine, so the state each node acts on is the
// product's. What it leaves out: snapshots and log compaction (schedules
// are short), membership changes, leadership transfer.

type raftRole int

const (
	roleFollower raftRole = iota
	roleCandidate
	roleLeader
)

// Raft timing, the product's defaults (docs/DESIGN.md "Defaults").
const (
	heartbeatTimeout = 500 * ms
	electionTimeout  = 500 * ms
	leaderLease      = 500 * ms
	heartbeatEvery   = heartbeatTimeout / 10
	maxBatch         = 64
)

type raftEntry struct {
	term   uint64
	cmd    *pb.Command // nil: the leader's no-op at the start of its term
	origin int
	req    uint64
}

var (
	errNoLeader = errors.New("sim raft: no leader reached in time")
	errTimeout  = errors.New("sim raft: proposal timed out")
)

type proposal struct {
	cb       func(fsm.Result, error)
	deadline int64 // local clock
	cmd      *pb.Command
	sent     bool
}

// Raft is one node's replica.
type Raft struct {
	s *Sim
	h *Host

	// persistent (survive a crash)
	term     uint64
	votedFor int
	log      []raftEntry // log[0] is a sentinel

	// volatile
	role        raftRole
	leaderID    int
	commit      uint64
	applied     uint64
	applying    bool
	m           *fsm.Machine
	st          *pb.ClusterState
	leaseSerial uint64
	leaseAt     int64 // local time at which the current lease serial was applied
	lastContact int64 // local time of the last message from a leader
	votes       []bool
	prevotes    []bool
	next, match []uint64
	lastAck     []int64 // leader: local time of the last answer of each peer
	ready       bool    // leader: its no-op is applied (the product's Barrier)
	readyTerm   uint64
	reqSeq      uint64
	props       map[uint64]*proposal
	seen        map[[2]uint64]bool // leader: forwarded proposals already appended
	waitReply   map[uint64][2]uint64
	epoch       uint64 // election timer generation
	onApply     func(idx uint64, cmd *pb.Command, res fsm.Result)
	onChange    func()
}

func newRaft(s *Sim, h *Host, initial []*pb.Command) *Raft {
	r := &Raft{s: s, h: h, votedFor: -1, log: []raftEntry{{}}}
	for _, c := range initial {
		r.log = append(r.log, raftEntry{term: 1, cmd: c, origin: -1})
	}
	r.term = 1
	return r
}

func (r *Raft) n() int { return len(r.s.hosts) }

func (r *Raft) lastIndex() uint64 { return uint64(len(r.log) - 1) }
func (r *Raft) lastTerm() uint64  { return r.log[len(r.log)-1].term }

// start (or restart after a crash): volatile state from scratch, the FSM
// rebuilt by re-applying the log as the leader reports commits.
func (r *Raft) start(initialCommit uint64) {
	n := r.n()
	r.role, r.leaderID = roleFollower, -1
	r.commit, r.applied, r.applying = initialCommit, 0, false
	r.m = fsm.New()
	r.st = r.m.State()
	r.leaseSerial = 0
	r.leaseAt = r.h.clock.Now()
	r.lastContact = r.h.clock.Now()
	r.votes, r.prevotes = make([]bool, n), make([]bool, n)
	r.next, r.match, r.lastAck = make([]uint64, n), make([]uint64, n), make([]int64, n)
	r.ready = false
	r.props = map[uint64]*proposal{}
	r.seen = map[[2]uint64]bool{}
	r.waitReply = map[uint64][2]uint64{}
	r.applyCommitted()
	r.resetElectionTimer()
}

func (r *Raft) randTimeout(base int64) int64 { return base + r.s.w.between(0, base) }

func (r *Raft) resetElectionTimer() {
	r.epoch++
	ep := r.epoch
	r.h.clock.After(r.h.sidecar, r.randTimeout(heartbeatTimeout), func() {
		if ep != r.epoch {
			return
		}
		r.electionTimeout()
	})
}

func (r *Raft) electionTimeout() {
	now := r.h.clock.Now()
	switch r.role {
	case roleLeader:
		return
	case roleFollower:
		if r.leaderID >= 0 && now-r.lastContact < heartbeatTimeout {
			r.resetElectionTimer()
			return
		}
	}
	r.leaderID = -1
	r.preVote()
}

// preVote asks for votes in term+1 without changing the term (raft 1.7's
// pre-vote): an isolated node that heals does not depose a working leader.
func (r *Raft) preVote() {
	r.role = roleCandidate
	for i := range r.prevotes {
		r.prevotes[i] = i == r.h.id
	}
	r.epoch++
	ep := r.epoch
	term, li, lt := r.term+1, r.lastIndex(), r.lastTerm()
	for _, p := range r.s.hosts {
		if p.id == r.h.id {
			continue
		}
		p := p
		r.s.net.send(r.h.id, p.id, p.sidecar, func() { p.raft.onVoteReq(r.h.id, term, li, lt, true) })
	}
	r.h.clock.After(r.h.sidecar, r.randTimeout(electionTimeout), func() {
		if ep == r.epoch && r.role == roleCandidate {
			r.preVote()
		}
	})
	r.maybeWinPre()
}

func (r *Raft) count(v []bool) int {
	c := 0
	for _, b := range v {
		if b {
			c++
		}
	}
	return c
}

func (r *Raft) majority() int { return r.n()/2 + 1 }

func (r *Raft) maybeWinPre() {
	if r.role == roleCandidate && r.count(r.prevotes) >= r.majority() {
		for i := range r.prevotes {
			r.prevotes[i] = false
		}
		r.election()
	}
}

func (r *Raft) election() {
	r.term++
	r.votedFor = r.h.id
	r.leaderID = -1
	for i := range r.votes {
		r.votes[i] = i == r.h.id
	}
	r.s.checkTerm(r.h, r.term)
	term, li, lt := r.term, r.lastIndex(), r.lastTerm()
	for _, p := range r.s.hosts {
		if p.id == r.h.id {
			continue
		}
		p := p
		r.s.net.send(r.h.id, p.id, p.sidecar, func() { p.raft.onVoteReq(r.h.id, term, li, lt, false) })
	}
	r.maybeWin()
}

func (r *Raft) upToDate(li, lt uint64) bool {
	return lt > r.lastTerm() || (lt == r.lastTerm() && li >= r.lastIndex())
}

func (r *Raft) onVoteReq(from int, term, li, lt uint64, pre bool) {
	now := r.h.clock.Now()
	// Leader stickiness: a node that hears from a leader refuses votes.
	haveLeader := (r.role == roleLeader) || (r.leaderID >= 0 && r.leaderID != from && now-r.lastContact < heartbeatTimeout)
	granted := false
	if pre {
		granted = term > r.term && !haveLeader && r.upToDate(li, lt)
	} else {
		if term > r.term && !haveLeader {
			r.stepDown(term)
		}
		if term == r.term && (r.votedFor == -1 || r.votedFor == from) && r.upToDate(li, lt) && !haveLeader {
			r.votedFor = from
			granted = true
			r.lastContact = now
		}
	}
	myTerm := r.term
	p := r.s.hosts[from]
	r.s.net.send(r.h.id, from, p.sidecar, func() { p.raft.onVoteResp(r.h.id, term, myTerm, granted, pre) })
}

func (r *Raft) onVoteResp(from int, asked, theirs uint64, granted, pre bool) {
	if theirs > r.term && !pre {
		r.stepDown(theirs)
		return
	}
	if r.role != roleCandidate || !granted {
		return
	}
	if pre {
		if asked == r.term+1 {
			r.prevotes[from] = true
			r.maybeWinPre()
		}
		return
	}
	if asked == r.term {
		r.votes[from] = true
		r.maybeWin()
	}
}

func (r *Raft) maybeWin() {
	if r.role != roleCandidate || r.count(r.votes) < r.majority() || r.votedFor != r.h.id {
		return
	}
	r.role, r.leaderID = roleLeader, r.h.id
	r.ready = false
	now := r.h.clock.Now()
	for i := range r.next {
		r.next[i] = r.lastIndex() + 1
		r.match[i] = 0
		r.lastAck[i] = now
	}
	r.seen = map[[2]uint64]bool{}
	r.log = append(r.log, raftEntry{term: r.term, origin: -1})
	r.match[r.h.id] = r.lastIndex()
	r.epoch++
	r.s.trace("raft leader %s term %d", r.h.name, r.term)
	r.heartbeat(r.epoch)
	r.checkQuorumLoop(r.epoch)
	r.onChange()
}

func (r *Raft) stepDown(term uint64) {
	wasLeader := r.role == roleLeader
	if term > r.term {
		r.term = term
		r.votedFor = -1
		r.s.checkTerm(r.h, r.term)
	}
	if r.role != roleFollower {
		r.role = roleFollower
		r.ready = false
		r.resetElectionTimer()
	}
	if wasLeader {
		r.leaderID = -1
		r.onChange()
	}
}

func (r *Raft) heartbeat(ep uint64) {
	if ep != r.epoch || r.role != roleLeader {
		return
	}
	r.broadcast()
	r.h.clock.After(r.h.sidecar, heartbeatEvery, func() { r.heartbeat(ep) })
}

// checkQuorumLoop: a leader that has not heard from a majority within the
// leader lease steps down (hashicorp raft's LeaderLeaseTimeout).
func (r *Raft) checkQuorumLoop(ep uint64) {
	r.h.clock.After(r.h.sidecar, leaderLease, func() {
		if ep != r.epoch || r.role != roleLeader {
			return
		}
		now := r.h.clock.Now()
		c := 1
		for i, t := range r.lastAck {
			if i != r.h.id && now-t < leaderLease {
				c++
			}
		}
		if c < r.majority() {
			r.s.trace("raft leader %s steps down: no quorum", r.h.name)
			r.stepDown(r.term)
			return
		}
		r.checkQuorumLoop(ep)
	})
}

func (r *Raft) broadcast() {
	for _, p := range r.s.hosts {
		if p.id != r.h.id {
			r.sendAppend(p)
		}
	}
}

func (r *Raft) sendAppend(p *Host) {
	nx := r.next[p.id]
	if nx < 1 {
		nx = 1
	}
	prev := nx - 1
	prevTerm := r.log[prev].term
	end := min(r.lastIndex(), prev+maxBatch)
	ents := make([]raftEntry, end-prev)
	copy(ents, r.log[prev+1:end+1])
	term, commit, from := r.term, r.commit, r.h.id
	r.s.net.send(from, p.id, p.sidecar, func() { p.raft.onAppend(from, term, prev, prevTerm, ents, commit) })
}

func (r *Raft) onAppend(from int, term, prev, prevTerm uint64, ents []raftEntry, commit uint64) {
	lp := r.s.hosts[from]
	if term < r.term {
		myTerm := r.term
		r.s.net.send(r.h.id, from, lp.sidecar, func() { lp.raft.onAppendResp(r.h.id, myTerm, false, 0, r.lastIndex()) })
		return
	}
	if term > r.term || r.role != roleFollower {
		r.stepDown(term)
	}
	if r.leaderID != from {
		r.leaderID = from
		r.onChange()
	}
	r.lastContact = r.h.clock.Now()
	if prev > r.lastIndex() || r.log[prev].term != prevTerm {
		hint := min(r.lastIndex(), prev-1)
		myTerm := r.term
		r.s.net.send(r.h.id, from, lp.sidecar, func() { lp.raft.onAppendResp(r.h.id, myTerm, false, 0, hint) })
		return
	}
	appended := false
	for i, e := range ents {
		idx := prev + 1 + uint64(i)
		if idx <= r.lastIndex() {
			if r.log[idx].term == e.term {
				continue
			}
			if idx <= r.commit {
				panic("sim raft: truncating a committed entry")
			}
			r.log = r.log[:idx]
		}
		r.log = append(r.log, e)
		appended = true
	}
	match := prev + uint64(len(ents))
	myTerm := r.term
	reply := func() {
		r.s.net.send(r.h.id, from, lp.sidecar, func() { lp.raft.onAppendResp(r.h.id, myTerm, true, match, 0) })
	}
	if appended && r.h.fsyncDelay > 0 {
		r.s.w.after(r.h.sidecar, r.h.fsyncDelay, reply)
	} else {
		reply()
	}
	if c := min(commit, match); c > r.commit {
		r.commit = c
		r.s.noteCommit(r, c)
		r.applyCommitted()
	}
}

func (r *Raft) onAppendResp(from int, term uint64, ok bool, match, hint uint64) {
	if term > r.term {
		r.stepDown(term)
		return
	}
	if r.role != roleLeader || term != r.term {
		return
	}
	r.lastAck[from] = r.h.clock.Now()
	if !ok {
		r.next[from] = max(1, min(r.next[from]-1, hint+1))
		r.sendAppend(r.s.hosts[from])
		return
	}
	if match > r.match[from] {
		r.match[from] = match
	}
	r.next[from] = max(r.next[from], r.match[from]+1)
	r.advanceCommit()
	if r.next[from] <= r.lastIndex() {
		r.sendAppend(r.s.hosts[from])
	}
}

func (r *Raft) advanceCommit() {
	for n := r.lastIndex(); n > r.commit; n-- {
		if r.log[n].term != r.term {
			break
		}
		c := 0
		for _, m := range r.match {
			if m >= n {
				c++
			}
		}
		if c >= r.majority() {
			r.commit = n
			r.s.noteCommit(r, n)
			r.applyCommitted()
			r.broadcast()
			return
		}
	}
}

// applyCommitted applies the committed entries after this node's apply
// delay, one batch at a time, with the real fsm.Machine.
func (r *Raft) applyCommitted() {
	if r.applying || r.applied >= r.commit {
		return
	}
	r.applying = true
	r.s.w.after(r.h.sidecar, r.h.applyDelay, func() {
		r.applying = false
		changed := false
		for r.applied < r.commit {
			r.applied++
			e := r.log[r.applied]
			if e.cmd == nil {
				if r.role == roleLeader && e.term == r.term && !r.ready {
					r.ready, r.readyTerm = true, r.term
					changed = true
				}
				continue
			}
			res := r.m.Apply(r.applied, e.cmd)
			changed = true
			r.publish()
			r.onApply(r.applied, e.cmd, res)
			if r.role == roleLeader && e.origin >= 0 {
				r.reply(e, res)
			}
			if p, ok := r.props[e.req]; ok && e.origin == r.h.id {
				delete(r.props, e.req)
				p.cb(res, nil)
			}
		}
		if changed {
			r.onChange()
		}
		r.applyCommitted()
	})
}

// publish refreshes the state copy and notes a new lease serial's apply
// time (node/raftfsm.go publishLocked).
func (r *Raft) publish() {
	r.st = r.m.State()
	if s := r.st.GetLease().GetSerial(); s != r.leaseSerial {
		r.leaseSerial = s
		r.leaseAt = r.h.clock.Now()
	}
	r.s.checkFSMTerm(r.h, r.st.Term)
}

func (r *Raft) reply(e raftEntry, res fsm.Result) {
	if e.origin == r.h.id {
		return
	}
	o := r.s.hosts[e.origin]
	req := e.req
	r.s.net.send(r.h.id, o.id, o.sidecar, func() { o.raft.onResult(req, res) })
}

func (r *Raft) onResult(req uint64, res fsm.Result) {
	if p, ok := r.props[req]; ok {
		delete(r.props, req)
		p.cb(res, nil)
	}
}

// Propose submits cmd and calls cb with the result once this node learns it
// was applied, or with an error when timeout (on this node's clock) passes
// first: no roleLeader known, no quorum, or the answer was lost.
func (r *Raft) Propose(cmd *pb.Command, timeout int64, cb func(fsm.Result, error)) {
	r.reqSeq++
	req := r.reqSeq
	p := &proposal{cb: cb, deadline: r.h.clock.Now() + timeout, cmd: cmd}
	r.props[req] = p
	r.h.clock.After(r.h.sidecar, timeout, func() {
		if q, ok := r.props[req]; ok && q == p {
			delete(r.props, req)
			if q.sent {
				cb(fsm.Result{}, errTimeout)
			} else {
				cb(fsm.Result{}, errNoLeader)
			}
		}
	})
	r.forward(req)
}

func (r *Raft) forward(req uint64) {
	p, ok := r.props[req]
	if !ok {
		return
	}
	switch {
	case r.role == roleLeader:
		r.s.proposed(r, p.cmd)
		r.log = append(r.log, raftEntry{term: r.term, cmd: p.cmd, origin: r.h.id, req: req})
		r.match[r.h.id] = r.lastIndex()
		p.sent = true
		if r.n() == 1 {
			r.advanceCommit()
		}
		r.broadcast()
	case r.leaderID >= 0:
		l := r.s.hosts[r.leaderID]
		from, cmd := r.h.id, p.cmd
		p.sent = true
		r.s.net.send(from, l.id, l.sidecar, func() { l.raft.onForward(from, req, cmd) })
	default:
		r.h.clock.After(r.h.sidecar, 20*ms, func() { r.forward(req) })
	}
}

func (r *Raft) onForward(from int, req uint64, cmd *pb.Command) {
	if r.role != roleLeader {
		return
	}
	k := [2]uint64{uint64(from), req}
	if r.seen[k] {
		return // a duplicated message
	}
	r.seen[k] = true
	r.s.proposed(r, cmd)
	r.log = append(r.log, raftEntry{term: r.term, cmd: cmd, origin: from, req: req})
	r.match[r.h.id] = r.lastIndex()
	r.broadcast()
}

// IsLeader: this node leads and has applied its term's first entry.
func (r *Raft) IsLeader() bool { return r.role == roleLeader && r.ready && r.readyTerm == r.term }

// State is the FSM as applied on this node (never mutated by anyone).
func (r *Raft) State() *pb.ClusterState { return r.st }

// Lease is the lease as applied here and this node's clock reading when it
// applied that serial (node/raftfsm.go's leaseAppliedAt).
func (r *Raft) Lease() (*pb.Lease, int64) { return r.st.GetLease(), r.leaseAt }
