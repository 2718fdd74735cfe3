package leader

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Timings of the leader's loop, as before the split.
const (
	// DecideInterval: Run decides at least this often while the lease has
	// expired (a failover that could not be decided yet is retried), while
	// a switchover runs, and while no lease is known.
	DecideInterval = 100 * time.Millisecond
	// IdleInterval: with a live lease, Run wakes at its expiry, at every
	// apply (each renewal) and at least this often (leadership balancing).
	IdleInterval = time.Second
	// proposeTimeout bounds each decision's proposal.
	proposeTimeout = 5 * time.Second
	// balanceAfter: leadership is handed away no sooner after it was taken,
	// and at most once per balanceEvery.
	balanceAfter = 5 * time.Second
	balanceEvery = 15 * time.Second
	// switchoverAskTimeout bounds the target's LSN answer during a switchover.
	switchoverAskTimeout = 500 * time.Millisecond
)

// Config is what the leader needs to know of this sidecar's config.
type Config struct {
	Name               string        // this node's name (its Raft server id)
	Lease              time.Duration // timing.lease: the lease a Promote grants when the settings carry none
	DriftMarginPercent int           // timing.drift_margin_percent
	MonitorInterval    time.Duration // timing.monitor_interval
	Logger             hclog.Logger
	Clock              Clock
	// Decided, when set, is told how long each Decide pass took (on Clock).
	Decided func(time.Duration)
}

// Leader is the Raft leader's decision loop: it watches the primary's
// lease and, once it expired, commits a promotion of the best standby; it
// drives a switchover in flight and hands Raft leadership away from the
// primary. One Leader lives for one leadership: node/ makes a new one each
// time this node becomes leader (after a Barrier), so at most one decides
// at a time, and every decision is a compare-and-set on (term, lease
// serial) in the FSM.
type Leader struct {
	cfg   Config
	log   Log
	peers Peers
	raft  Raft
	lg    hclog.Logger
	clk   Clock
	// since: when this node became leader; lastTransfer: its last
	// leadership hand-over attempt (see balanceLeadership).
	since, lastTransfer time.Time
	// noted: the lease serial for which "primary failed, no candidate" or
	// "waiting for a manual failover" was already recorded.
	noted uint64
	// seen: when this leadership first saw each Raft server (manageVoters).
	seen map[string]time.Time
}

// New returns the leader of a leadership that begins now (Clock time).
func New(cfg Config, log Log, peers Peers, raft Raft) *Leader {
	lg := cfg.Logger
	if lg == nil {
		lg = hclog.NewNullLogger()
	}
	return &Leader{cfg: cfg, log: log, peers: peers, raft: raft, lg: lg, clk: cfg.Clock, since: cfg.Clock.Now(), seen: map[string]time.Time{}}
}

// Run decides until ctx ends: at once, then whenever the state changes, at
// the lease's expiry to the millisecond, and at least every IdleInterval
// (every DecideInterval once the lease expired: see NextWake).
func (l *Leader) Run(ctx context.Context) {
	for {
		began := l.clk.Now()
		l.Decide(ctx)
		if l.cfg.Decided != nil {
			l.cfg.Decided(l.clk.Now().Sub(began))
		}
		wait := l.NextWake().Sub(l.clk.Now())
		select {
		case <-ctx.Done():
			return
		case <-l.clk.After(wait):
		case <-l.log.Changed():
		}
	}
}

// NextWake is when Decide is due next if nothing changes: the current
// lease's expiry (plus a millisecond), at most IdleInterval away; while
// the lease has expired, a switchover runs or no lease is known,
// DecideInterval from now.
func (l *Leader) NextWake() time.Time {
	now := l.clk.Now()
	wait := DecideInterval
	lease, appliedAt := l.log.Lease()
	if at, ok := fsm.LeaseExpiry(lease, appliedAt, l.cfg.DriftMarginPercent); ok && l.log.State().Switchover == nil {
		if until := at.Sub(now); until > 0 {
			wait = min(until+time.Millisecond, IdleInterval)
		}
	}
	return now.Add(wait)
}

// Decide is one pass: drive a switchover in flight, else balance the
// leadership and, when the primary's lease expired, fail over (or record
// once per lease serial why not).
func (l *Leader) Decide(ctx context.Context) {
	st := l.log.State()
	if st.Switchover != nil {
		l.driveSwitchover(ctx, st)
		return
	}
	primary := fsm.Primary(st)
	if primary == nil {
		return
	}
	l.balanceLeadership(st, primary)
	lease, appliedAt := l.log.Lease()
	if !fsm.LeaseExpired(lease, appliedAt, l.clk.Now(), l.cfg.DriftMarginPercent) {
		// Membership only while the primary holds its lease: a failover
		// comes first.
		l.manageVoters(ctx, st)
		return
	}
	why := fmt.Sprintf("the lease of %q (term %d, serial %d) expired", primary.Name, st.Term, lease.Serial)
	if lease.Released {
		why = fmt.Sprintf("%q released its lease (%s)", primary.Name, lease.ReleaseReason)
	}
	if st.Settings.GetPaused() {
		l.noteOnce(ctx, lease.Serial, fsm.EventFailoverPaused, why+": the cluster is paused, no automatic failover")
		return
	}
	if st.Settings.GetFailoverMode() == pb.FailoverMode_FAILOVER_MODE_MANUAL {
		l.noteOnce(ctx, lease.Serial, fsm.EventFailoverPending, why+": failover is manual, run `hasidecar failover --to NAME`")
		return
	}
	asked := l.clk.Now()
	best, answers, reasons := PickCandidate(ctx, l.peers, st, lease, l.cfg.MonitorInterval)
	l.lg.Debug("candidates answered", "in", l.clk.Now().Sub(asked).Round(time.Millisecond), "asked", len(answers))
	if best == nil {
		l.noteOnce(ctx, lease.Serial, fsm.EventFailoverBlocked, fmt.Sprintf("%s: no standby can be promoted: %s", why, strings.Join(reasons, "; ")))
		return
	}
	details := fmt.Sprintf("%s; promoting %q at %s (candidates: %s; answered in %s)", why, best.Node.Name, fsm.FormatLSN(best.Received), fsm.DescribeCandidates(answers), l.clk.Now().Sub(asked).Round(time.Millisecond))
	l.promote(ctx, st, best, lease.Serial, fsm.EventFailover, details)
}

// PickCandidate asks the candidates for fresh LSNs (bounded by the monitor
// interval, at least 500 ms) and chooses the new primary with
// fsm.PickCandidate. The keeper's storage-failure check uses it too.
func PickCandidate(ctx context.Context, peers Peers, st *pb.ClusterState, lease *pb.Lease, monitorInterval time.Duration) (*fsm.Candidate, []fsm.Candidate, []string) {
	return fsm.PickCandidate(st, lease, func(nodes []*pb.Node) []fsm.Candidate {
		return AskLSNs(ctx, peers, nodes, st.Term, max(monitorInterval, 500*time.Millisecond))
	})
}

// AskLSNs asks nodes for their fresh LSNs and pairs each with its answer.
func AskLSNs(ctx context.Context, peers Peers, nodes []*pb.Node, term uint64, timeout time.Duration) []fsm.Candidate {
	out := make([]fsm.Candidate, len(nodes))
	answers := peers.LSNs(ctx, nodes, term, timeout)
	for i, n := range nodes {
		out[i].Node = n
		if i < len(answers) {
			out[i].Answer = answers[i]
		}
	}
	return out
}

// promote commits the decision. A stale term or lease serial (a renewal or
// another decision got in first) is refused by the FSM and nothing happens.
func (l *Leader) promote(ctx context.Context, st *pb.ClusterState, c *fsm.Candidate, serial uint64, reason, details string) {
	res, err := l.log.Propose(ctx, fsm.Promote(st, fsm.Promotion{
		NodeID: c.Node.Id, Reason: reason, LeaseSerial: serial, Timeline: c.Answer.GetTimeline(),
		ReceivedLSN: fsm.CandidateReceived(c), LeaseAnchor: c.Answer.GetLeaseAnchor(), Details: details,
	}, l.cfg.Lease), proposeTimeout)
	if err != nil {
		l.lg.Warn("promotion decision not committed", "candidate", c.Node.Name, "term", st.Term+1, "error", err)
		return
	}
	l.lg.Info("promotion decided", "node", c.Node.Name, "term", st.Term+1, "index", res.Index, "reason", reason, "details", details)
}

// balanceLeadership hands Raft leadership away from the node whose Postgres
// is the primary, to a witness when one is healthy, else to a standby. When
// the primary's host then dies, the cluster keeps its leader and its lease
// clock: no election is added to the failover. Not while a scheduled
// operation runs: this leader runs it, and losing the leadership would end
// it as interrupted (a rolling restart's switchover may just have made this
// node the primary); the hand-off waits until it is done.
func (l *Leader) balanceLeadership(st *pb.ClusterState, primary *pb.Node) {
	now := l.clk.Now()
	if primary.Name != l.cfg.Name || st.GetRunning() != nil || now.Sub(l.since) < balanceAfter || now.Sub(l.lastTransfer) < balanceEvery {
		return
	}
	servers, _, err := l.raft.Servers()
	if err != nil {
		return
	}
	fresh := 2 * l.cfg.MonitorInterval
	applied := l.raft.AppliedIndex()
	var best *Server
	bestWitness := false
	for _, s := range servers {
		if !s.Voter || s.ID == l.cfg.Name {
			continue
		}
		row := fsm.NodeByName(st, s.ID)
		if row == nil {
			continue
		}
		idx, at, ok := l.peers.Report(row.Id)
		if !ok || now.Sub(at) > fresh || idx+10 < applied {
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
	l.lastTransfer = now
	l.lg.Info("handing raft leadership to a node that is not the primary", "to", best.ID)
	if err := l.raft.TransferLeadership(*best); err != nil {
		l.lg.Warn("leadership transfer", "to", best.ID, "error", err)
	}
}

// noteOnce records, once per lease serial, why no promotion happens.
func (l *Leader) noteOnce(ctx context.Context, serial uint64, typ, details string) {
	if l.noted == serial {
		return
	}
	l.noted = serial
	l.lg.Warn("primary failed, no promotion", "why", details)
	if _, err := l.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{Type: typ, Ok: false, Details: details}}}, proposeTimeout); err != nil {
		l.lg.Warn("record event", "type", typ, "error", err)
	}
}

// driveSwitchover is the leader's part of a planned switchover: promote
// the target once it has the old primary's shutdown checkpoint, or roll
// back at the deadline (DESIGN.md "Planned switchover").
func (l *Leader) driveSwitchover(ctx context.Context, st *pb.ClusterState) {
	sw := st.Switchover
	from, to := fsm.NodeByID(st, sw.FromId), fsm.NodeByID(st, sw.ToId)
	lease, _ := l.log.Lease()
	if sw.Term != st.Term || from == nil || to == nil {
		l.endSwitchover(ctx, sw, "the switchover no longer matches the cluster")
		return
	}
	if l.clk.Now().UnixMilli() > sw.DeadlineUnixMs {
		_, err := l.log.Propose(ctx, fsm.Promote(st, fsm.Promotion{
			NodeID: from.Id, Reason: fsm.ReasonSwitchoverRollback, LeaseSerial: lease.Serial,
			Timeline: lease.Timeline, Details: fmt.Sprintf("%q was not promoted before the deadline", to.Name),
		}, l.cfg.Lease), proposeTimeout)
		if err != nil {
			l.lg.Warn("switchover rollback not committed", "error", err)
		} else {
			l.lg.Warn("switchover rolled back", "from", from.Name, "to", to.Name, "term", st.Term+1)
		}
		return
	}
	if sw.ShutdownLsn == 0 {
		return // the old primary is still stopping
	}
	a := l.peers.LSNs(ctx, []*pb.Node{to}, st.Term, switchoverAskTimeout)
	if len(a) != 1 || a[0] == nil || !a[0].Healthy || !a[0].Postgres.GetInRecovery() {
		return
	}
	if received := max(a[0].Postgres.GetReceiveLsn(), a[0].Postgres.GetReplayLsn()); received <= sw.ShutdownLsn {
		return // not yet past the shutdown checkpoint record
	}
	l.promote(ctx, st, &fsm.Candidate{Node: to, Answer: a[0]}, lease.Serial, fsm.EventSwitchover,
		fmt.Sprintf("%q received %q's shutdown checkpoint %s", to.Name, from.Name, fsm.FormatLSN(sw.ShutdownLsn)))
}

func (l *Leader) endSwitchover(ctx context.Context, sw *pb.Switchover, why string) {
	if _, err := l.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_EndSwitchover{EndSwitchover: &pb.EndSwitchover{Term: sw.Term, Ok: false, Details: why}}}, proposeTimeout); err != nil {
		l.lg.Warn("end switchover", "error", err)
	}
}
