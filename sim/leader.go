package sim

import (
	"sort"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Leader is the in-sim driver of the Raft leader's decision loop, written
// after node/decider.go and node/decide.go (leaseExpired, promotable,
// choose, chooseSync are mirrored below: they are unexported in package
// node). Like Keeper it is a model of the product's code, run against the
// real FSM state as applied on this node.
type Leader struct {
	s        *Sim
	h        *Host
	deciding bool
	wakeAt   int64
}

type lsnAnswer struct {
	healthy, running, recovery bool
	lsn                        uint64
	tli                        uint32
}

const maxLagOnFailover = 16 << 20

func (d *Leader) drift() int {
	if d.s.cfg.plant == plantNoDriftMargin {
		return 0 // planted: the leader ignores the drift margin
	}
	return d.s.cfg.driftPercent
}

// leaseExpired mirrors node/decide.go.
func leaseExpired(l *pb.Lease, appliedAt, now int64, driftPercent int) bool {
	if l == nil || l.HolderId == 0 {
		return false
	}
	if l.Released {
		return true
	}
	dur := l.DurationMs * ms
	return now > appliedAt+dur+dur*int64(driftPercent)/100
}

func (d *Leader) start() { d.loop() }

func (d *Leader) loop() {
	d.step()
	d.h.clock.After(d.h.sidecar, 100*ms, d.loop)
}

func (d *Leader) step() {
	r := d.h.raft
	if !r.IsLeader() || d.deciding || !d.h.sidecarUp {
		return
	}
	st := r.State()
	if st.Switchover != nil {
		return
	}
	primary := fsm.Primary(st)
	if primary == nil {
		return
	}
	lease, at := r.Lease()
	if !leaseExpired(lease, at, d.h.clock.Now(), d.drift()) {
		if lease.GetHolderId() != 0 && !lease.Released {
			dur := lease.DurationMs * ms
			w := at + dur + dur*int64(d.drift())/100 + ms
			if w != d.wakeAt {
				d.wakeAt = w
				d.h.clock.AtLocal(d.h.sidecar, w, d.step)
			}
		}
		return
	}
	var ask []*pb.Node
	cands := promotable(st)
	if st.Settings.GetSynchronous() {
		for _, id := range st.SyncStandbys {
			if n := fsm.NodeByID(st, id); n != nil {
				ask = append(ask, n)
			}
		}
	} else {
		ask = cands
	}
	d.deciding = true
	answers := make([]*lsnAnswer, len(ask))
	got := 0
	done := false
	finish := func() {
		if done {
			return
		}
		done = true
		d.decide(st, lease, cands, ask, answers)
	}
	for i, n := range ask {
		i, o := i, d.s.hosts[n.Id-1]
		me := d.h
		d.s.net.send(me.id, o.id, o.sidecar, func() {
			a := o.keeper.lsnAnswer()
			d.s.net.send(o.id, me.id, me.sidecar, func() {
				if !done {
					answers[i] = a
					got++
					if got == len(ask) {
						finish()
					}
				}
			})
		})
	}
	if len(ask) == 0 {
		finish()
		return
	}
	d.h.clock.After(d.h.sidecar, monitorEvery, finish)
}

func (d *Leader) decide(st *pb.ClusterState, lease *pb.Lease, cands, asked []*pb.Node, answers []*lsnAnswer) {
	var best *candidate
	if st.Settings.GetSynchronous() {
		ok := map[uint32]bool{}
		for _, c := range cands {
			ok[c.Id] = true
		}
		ms := make([]candidate, len(asked))
		for i := range asked {
			ms[i] = candidate{node: asked[i], answer: answers[i]}
		}
		best = chooseSync(ms, ok, lease, st.SyncFloorLsn)
	} else {
		cs := make([]candidate, len(asked))
		for i := range asked {
			cs[i] = candidate{node: asked[i], answer: answers[i]}
		}
		best = choose(cs, lease, maxLagOnFailover, false)
	}
	if best == nil || !d.h.raft.IsLeader() {
		d.deciding = false
		return
	}
	cmd := &pb.Promote{NodeId: best.node.Id, Term: st.Term + 1, Reason: fsm.EventFailover, LeaseSerial: lease.Serial,
		LeaseMs: leaseDur / ms, Timeline: best.answer.tli, ReceivedLsn: max(best.received, best.answer.lsn)}
	d.s.trace("%s decides: promote %s in term %d", d.h.name, best.node.Name, cmd.Term)
	d.h.raft.Propose(&pb.Command{Cmd: &pb.Command_Promote{Promote: cmd}}, 5*sec, func(fsm.Result, error) {
		d.deciding = false
		d.step()
	})
}

// promotable mirrors node/decide.go.
func promotable(st *pb.ClusterState) []*pb.Node {
	var out []*pb.Node
	for _, n := range st.Nodes {
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Role != pb.NodeRole_NODE_ROLE_STANDBY || !n.Active || n.Priority <= 0 || fsm.HasTag(n, "nofailover") {
			continue
		}
		out = append(out, n)
	}
	return out
}

type candidate struct {
	node     *pb.Node
	answer   *lsnAnswer
	received uint64
}

// choose mirrors node/decide.go.
func choose(cands []candidate, lease *pb.Lease, maxLag uint64, synchronous bool) *candidate {
	var ok []*candidate
	for i := range cands {
		c := &cands[i]
		a := c.answer
		switch {
		case a == nil, !a.healthy, !a.running || !a.recovery:
			continue
		case lease.GetTimeline() != 0 && a.tli != lease.GetTimeline():
			continue
		}
		c.received = a.lsn
		if !synchronous && lease.GetFlushLsn() > c.received && lease.GetFlushLsn()-c.received > maxLag {
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		return nil
	}
	sort.SliceStable(ok, func(i, j int) bool {
		a, b := ok[i], ok[j]
		if a.received != b.received {
			return a.received > b.received
		}
		if a.node.Priority != b.node.Priority {
			return a.node.Priority > b.node.Priority
		}
		return a.node.Id < b.node.Id
	})
	return ok[0]
}

// chooseSync mirrors node/decide.go.
func chooseSync(members []candidate, promotableIDs map[uint32]bool, lease *pb.Lease, floor uint64) *candidate {
	if len(members) == 0 {
		return nil
	}
	var most uint64
	var eligible []candidate
	for _, m := range members {
		a := m.answer
		if a == nil || !a.healthy {
			return nil
		}
		most = max(most, a.lsn)
		if promotableIDs[m.node.Id] {
			eligible = append(eligible, m)
		}
	}
	best := choose(eligible, lease, 0, true)
	if best == nil || best.received < most || best.received < floor {
		return nil
	}
	return best
}
