package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// decider is the Raft leader's decision loop: it watches the primary's
// lease and, once it expired, commits a promotion of the best standby. It
// runs only while this node leads (started after a Barrier, stopped on loss
// of leadership), so at most one decider acts at a time, and every decision
// is a compare-and-set on (term, lease serial) in the FSM.
type decider struct {
	n *Node
	// since: when this node became leader; lastTransfer: its last
	// leadership hand-over attempt (see balanceLeadership).
	since, lastTransfer time.Time
	// noted: the lease serial for which "primary failed, no candidate" or
	// "waiting for a manual failover" was already recorded.
	noted uint64
}

func newDecider(n *Node) *decider { return &decider{n: n, since: time.Now()} }

func (d *decider) run(ctx context.Context) {
	for {
		d.step(ctx)
		// Wake at the lease's expiry to the millisecond, else every 100 ms
		// or when the state changes.
		wait := 100 * time.Millisecond
		if l, appliedAt := d.n.fsm.Lease(); l.GetHolderId() != 0 && !l.Released {
			dur := time.Duration(l.DurationMs) * time.Millisecond
			until := time.Until(appliedAt.Add(dur + dur*time.Duration(d.n.cfg.Timing.DriftMarginPercent)/100))
			if until > 0 && until < wait {
				wait = until + time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-d.n.fsm.Changed():
		}
	}
}

func (d *decider) step(ctx context.Context) {
	n := d.n
	st := n.fsm.State()
	if st.Switchover != nil {
		d.driveSwitchover(ctx, st)
		return
	}
	primary := fsm.Primary(st)
	if primary == nil {
		return
	}
	d.balanceLeadership(st, primary)
	lease, appliedAt := n.fsm.Lease()
	if !fsm.LeaseExpired(lease, appliedAt, time.Now(), n.cfg.Timing.DriftMarginPercent) {
		return
	}
	why := fmt.Sprintf("the lease of %q (term %d, serial %d) expired", primary.Name, st.Term, lease.Serial)
	if lease.Released {
		why = fmt.Sprintf("%q released its lease (%s)", primary.Name, lease.ReleaseReason)
	}
	if st.Settings.GetPaused() {
		d.noteOnce(ctx, lease.Serial, fsm.EventFailoverPaused, why+": the cluster is paused, no automatic failover")
		return
	}
	if st.Settings.GetFailoverMode() == pb.FailoverMode_FAILOVER_MODE_MANUAL {
		d.noteOnce(ctx, lease.Serial, fsm.EventFailoverPending, why+": failover is manual, run `hasidecar failover --to NAME`")
		return
	}
	best, answers, reasons := d.n.pickCandidate(ctx, st, lease)
	if best == nil {
		d.noteOnce(ctx, lease.Serial, fsm.EventFailoverBlocked, fmt.Sprintf("%s: no standby can be promoted: %s", why, strings.Join(reasons, "; ")))
		return
	}
	details := fmt.Sprintf("%s; promoting %q at %s (candidates: %s)", why, best.Node.Name, fsm.FormatLSN(best.Received), fsm.DescribeCandidates(answers))
	d.promote(ctx, st, best, lease.Serial, fsm.EventFailover, details)
}

// promote commits the decision. A stale term or lease serial (a renewal or
// another decision got in first) is refused by the FSM and nothing happens.
func (d *decider) promote(ctx context.Context, st *pb.ClusterState, c *fsm.Candidate, serial uint64, reason, details string) {
	n := d.n
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := n.Propose(pctx, fsm.Promote(st, fsm.Promotion{
		NodeID: c.Node.Id, Reason: reason, LeaseSerial: serial, Timeline: c.Answer.GetTimeline(),
		ReceivedLSN: fsm.CandidateReceived(c), Details: details,
	}, n.cfg.Timing.Lease.D()))
	if err != nil {
		n.logger.Warn("promotion decision not committed", "candidate", c.Node.Name, "term", st.Term+1, "error", err)
		return
	}
	n.logger.Info("promotion decided", "node", c.Node.Name, "term", st.Term+1, "index", res.Index, "reason", reason, "details", details)
}

// pickCandidate asks the candidates for fresh LSNs and chooses the new
// primary: among promotable standbys (asynchronous mode), or the most
// advanced member of the committed synchronous set once every member
// answered (synchronous mode). reasons say why others were left out.
func (n *Node) pickCandidate(ctx context.Context, st *pb.ClusterState, lease *pb.Lease) (*fsm.Candidate, []fsm.Candidate, []string) {
	return fsm.PickCandidate(st, lease, func(nodes []*pb.Node) []fsm.Candidate { return n.askLSNsFor(ctx, nodes, st.Term) })
}

// askLSNsFor asks every candidate for its freshest LSNs, in parallel,
// bounded by the monitor interval.
func (n *Node) askLSNsFor(ctx context.Context, nodes []*pb.Node, term uint64) []fsm.Candidate {
	out := make([]fsm.Candidate, len(nodes))
	var wg sync.WaitGroup
	timeout := max(n.cfg.Timing.MonitorInterval.D(), 500*time.Millisecond)
	for i, node := range nodes {
		out[i].Node = node
		wg.Add(1)
		go func(i int, node *pb.Node) {
			defer wg.Done()
			resp, err := n.askLSN(ctx, node, term, timeout)
			if err != nil {
				n.logger.Debug("candidate did not answer", "node", node.Name, "error", err)
				return
			}
			out[i].Answer = resp
		}(i, node)
	}
	wg.Wait()
	return out
}

func (n *Node) askLSN(ctx context.Context, node *pb.Node, term uint64, timeout time.Duration) (*pb.LSNResponse, error) {
	if node.Name == n.cfg.Name {
		return n.lsnAnswer(ctx)
	}
	conn, err := n.peers.get(node.GrpcAddress)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return pb.NewPeerServiceClient(conn).LSN(cctx, &pb.LSNRequest{Term: term})
}

// balanceLeadership hands Raft leadership away from the node whose Postgres
// is the primary, to a witness when one is healthy, else to a standby. When
// the primary's host then dies, the cluster keeps its leader and its lease
// clock: no election is added to the failover.
func (d *decider) balanceLeadership(st *pb.ClusterState, primary *pb.Node) {
	n := d.n
	if primary.Name != n.cfg.Name || time.Since(d.since) < 5*time.Second || time.Since(d.lastTransfer) < 15*time.Second {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	fresh := 2 * n.cfg.Timing.MonitorInterval.D()
	var best *raft.Server
	bestWitness := false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == n.cfg.Name {
			continue
		}
		row := fsm.NodeByName(st, string(s.ID))
		if row == nil {
			continue
		}
		r, at, ok := n.reports.get(row.Id)
		if !ok || time.Since(at) > fresh || r.AppliedIndex+10 < n.raft.AppliedIndex() {
			continue
		}
		witness := row.Kind == pb.NodeKind_NODE_KIND_WITNESS
		if best == nil || (witness && !bestWitness) {
			s := s
			best, bestWitness = &s, witness
		}
	}
	if best == nil {
		return
	}
	d.lastTransfer = time.Now()
	n.logger.Info("handing raft leadership to a node that is not the primary", "to", best.ID)
	if err := n.raft.LeadershipTransferToServer(best.ID, best.Address).Error(); err != nil {
		n.logger.Warn("leadership transfer", "to", best.ID, "error", err)
	}
}

// noteOnce records, once per lease serial, why no promotion happens.
func (d *decider) noteOnce(ctx context.Context, serial uint64, typ, details string) {
	if d.noted == serial {
		return
	}
	d.noted = serial
	d.n.logger.Warn("primary failed, no promotion", "why", details)
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := d.n.Propose(ectx, &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{Type: typ, Ok: false, Details: details}}}); err != nil {
		d.n.logger.Warn("record event", "type", typ, "error", err)
	}
}
