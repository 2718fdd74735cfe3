package fsm

import (
	"fmt"
	"sort"
	"strings"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Pure queries behind a failover (DESIGN.md "Choosing the new primary"):
// who may be promoted, who is in the synchronous set, when the lease is
// expired, which candidate wins, and the one Promote command that automatic
// failover, switchover, manual failover and the switchover rollback commit.
// The callers (node/leader, node/keeper) only gather the LSN answers.

// LeaseExpiry is the monotonic time after which the lease l, applied on
// this node at appliedAt, is expired with the drift margin driftPercent.
// ok is false when no lease is held (no holder) or it was released (then it
// is expired at once: see LeaseExpired).
func LeaseExpiry(l *pb.Lease, appliedAt time.Time, driftPercent int) (at time.Time, ok bool) {
	if l == nil || l.HolderId == 0 || l.Released {
		return time.Time{}, false
	}
	d := time.Duration(l.DurationMs) * time.Millisecond
	return appliedAt.Add(d + d*time.Duration(driftPercent)/100), true
}

// LeaseExpired: the primary is failed only when its lease, as this node
// applied it (at appliedAt on its monotonic clock), plus the drift margin
// has passed at now, or when the primary released it.
func LeaseExpired(l *pb.Lease, appliedAt, now time.Time, driftPercent int) bool {
	if l == nil || l.HolderId == 0 {
		return false
	}
	if l.Released {
		return true
	}
	at, _ := LeaseExpiry(l, appliedAt, driftPercent)
	return now.After(at)
}

// Promotable filters the nodes table: data standbys that are active, not
// marked needs_reclone, have a priority above zero and no nofailover tag, in table order. skipped says,
// by name, why each other data node was left out (SkippedReasons sorts it).
func Promotable(st *pb.ClusterState) (cands []*pb.Node, skipped map[string]string) {
	skipped = map[string]string{}
	for _, n := range st.GetNodes() {
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			continue
		}
		switch {
		case n.Role != pb.NodeRole_NODE_ROLE_STANDBY:
			skipped[n.Name] = "not a registered standby"
		case !n.Active:
			skipped[n.Name] = "inactive (has not rejoined)"
		case n.NeedsReclone:
			skipped[n.Name] = "needs a re-clone (" + n.NeedsRecloneReason + ")"
		case n.Maintenance:
			skipped[n.Name] = "in maintenance"
		case n.Priority <= 0:
			skipped[n.Name] = "priority 0"
		case HasTag(n, "nofailover"):
			skipped[n.Name] = "tagged nofailover"
		default:
			cands = append(cands, n)
		}
	}
	return cands, skipped
}

// SkippedReasons renders Promotable's skipped map as "name: why", sorted.
func SkippedReasons(skipped map[string]string) []string {
	reasons := make([]string, 0, len(skipped))
	for name, why := range skipped {
		reasons = append(reasons, name+": "+why)
	}
	sort.Strings(reasons)
	return reasons
}

// SyncMembers are the nodes of the committed synchronous set, in its order.
func SyncMembers(st *pb.ClusterState) []*pb.Node {
	var out []*pb.Node
	for _, id := range st.GetSyncStandbys() {
		if n := NodeByID(st, id); n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Candidate is a standby with the LSNs it reported when asked after the
// lease expired.
type Candidate struct {
	Node     *pb.Node
	Answer   *pb.LSNResponse // nil: did not answer
	Received uint64          // set by Choose for the candidates it keeps
}

// Choose picks the new primary among the candidates: only those that
// answered healthy, run in recovery on the primary's timeline and (in
// asynchronous mode) are within maxLag of the primary's last flush LSN; the
// highest received LSN wins, ties go to the higher priority, then the lower
// id. It returns nil with the reasons when nobody qualifies.
func Choose(cands []Candidate, lease *pb.Lease, maxLag uint64, synchronous bool) (*Candidate, []string) {
	var ok []*Candidate
	var reasons []string
	for i := range cands {
		c := &cands[i]
		a := c.Answer
		name := c.Node.Name
		switch {
		case a == nil:
			reasons = append(reasons, name+": did not answer")
			continue
		case !a.Healthy:
			reasons = append(reasons, fmt.Sprintf("%s: unhealthy (%s)", name, a.Reason))
			continue
		case !a.Postgres.GetRunning() || !a.Postgres.GetInRecovery():
			reasons = append(reasons, name+": Postgres is not running in recovery")
			continue
		case lease.GetTimeline() != 0 && a.Timeline != lease.GetTimeline():
			reasons = append(reasons, fmt.Sprintf("%s: on timeline %d, the primary was on %d", name, a.Timeline, lease.GetTimeline()))
			continue
		}
		c.Received = max(a.Postgres.GetReceiveLsn(), a.Postgres.GetReplayLsn())
		if !synchronous && lease.GetFlushLsn() > c.Received && lease.GetFlushLsn()-c.Received > maxLag {
			reasons = append(reasons, fmt.Sprintf("%s: %d bytes behind the primary's last flush, more than maximum_lag_on_failover (%d)", name, lease.GetFlushLsn()-c.Received, maxLag))
			continue
		}
		ok = append(ok, c)
	}
	if len(ok) == 0 {
		return nil, reasons
	}
	sort.SliceStable(ok, func(i, j int) bool {
		a, b := ok[i], ok[j]
		if a.Received != b.Received {
			return a.Received > b.Received
		}
		if a.Node.Priority != b.Node.Priority {
			return a.Node.Priority > b.Node.Priority
		}
		return a.Node.Id < b.Node.Id
	})
	return ok[0], reasons
}

// ChooseSync picks the new primary in synchronous mode. members are the
// whole committed synchronous set (promotable or not) and k its committed
// count (ClusterState.sync_count): every acknowledged write is on k
// members, so once n − k + 1 of the n members answered, one of them holds
// it (SyncAnswersNeeded). The winner — a promotable member that answered —
// must have received at least as much as each member that answered, and at
// least floor (ClusterState.sync_floor_lsn: what the current primary had
// received when it was promoted; members kept in the set through that
// promotion may lag it, see node/keeper/sync.go).
func ChooseSync(members []Candidate, promotableIDs map[uint32]bool, lease *pb.Lease, floor uint64, k int) (*Candidate, []string) {
	if len(members) == 0 {
		return nil, []string{"synchronous mode and the synchronous set is empty: no standby is known to hold every acknowledged write"}
	}
	k = min(max(k, 1), len(members))
	need := SyncAnswersNeeded(len(members), k)
	var most uint64
	var eligible []Candidate
	var missing []string
	answered := 0
	for _, m := range members {
		a := m.Answer
		if a == nil || !a.Healthy {
			missing = append(missing, m.Node.Name)
			continue
		}
		answered++
		most = max(most, a.Postgres.GetReceiveLsn(), a.Postgres.GetReplayLsn())
		if promotableIDs[m.Node.Id] {
			eligible = append(eligible, m)
		}
	}
	if answered < need {
		return nil, []string{fmt.Sprintf("%d of the %d synchronous standbys answered, %d needed (ANY %d: each acknowledged write is on %d of them); not answering: %s; they may hold the latest acknowledged writes",
			answered, len(members), need, k, k, strings.Join(missing, ", "))}
	}
	best, reasons := Choose(eligible, lease, 0, true)
	if best == nil {
		return nil, reasons
	}
	if best.Received < most {
		return nil, append(reasons, fmt.Sprintf("a synchronous standby that cannot be promoted has received more WAL (%s) than %s (%s)", FormatLSN(most), best.Node.Name, FormatLSN(best.Received)))
	}
	if best.Received < floor {
		return nil, append(reasons, fmt.Sprintf("%s, the most advanced synchronous standby, has received %s, less than the %s the primary had when it was promoted: it may lack acknowledged writes (it has not streamed from the primary yet)", best.Node.Name, FormatLSN(best.Received), FormatLSN(floor)))
	}
	for i := range members {
		if members[i].Node.Id == best.Node.Id {
			members[i].Received = best.Received
			return &members[i], reasons
		}
	}
	return best, reasons
}

// PickCandidate chooses the new primary the way the leader does: among the
// promotable standbys (asynchronous mode), or the most advanced member of
// the committed synchronous set once n − k + 1 of its n members answered
// (synchronous mode, ANY k). ask returns, for the nodes it is given, their fresh LSN answers in
// the same order (a nil Answer for one that did not answer). It returns the
// winner (nil if none), every answer and the reasons others were left out.
func PickCandidate(st *pb.ClusterState, lease *pb.Lease, ask func(nodes []*pb.Node) []Candidate) (*Candidate, []Candidate, []string) {
	cands, skipped := Promotable(st)
	reasons := SkippedReasons(skipped)
	if !st.GetSettings().GetSynchronous() {
		answers := ask(cands)
		best, more := Choose(answers, lease, st.GetSettings().GetMaximumLagOnFailover(), false)
		return best, answers, append(reasons, more...)
	}
	ok := map[uint32]bool{}
	for _, c := range cands {
		ok[c.Id] = true
	}
	answers := ask(SyncMembers(st))
	best, more := ChooseSync(answers, ok, lease, st.GetSyncFloorLsn(), SyncCount(st))
	return best, answers, append(reasons, more...)
}

// DescribeCandidates renders the answers for a decision's details:
// "pg2=0/3000060/tli1 pg3=?".
func DescribeCandidates(cands []Candidate) string {
	var parts []string
	for _, c := range cands {
		if c.Answer == nil {
			parts = append(parts, c.Node.Name+"=?")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s/tli%d", c.Node.Name, FormatLSN(max(c.Answer.Postgres.GetReceiveLsn(), c.Answer.Postgres.GetReplayLsn())), c.Answer.Timeline))
	}
	return strings.Join(parts, " ")
}

// FormatLSN renders an LSN as Postgres does ("16/B374D848").
func FormatLSN(v uint64) string { return fmt.Sprintf("%X/%X", v>>32, uint32(v)) }

// Promotion is what a promotion decision names besides the state.
type Promotion struct {
	NodeID      uint32
	Reason      string // EventFailover, EventSwitchover, ReasonManual or ReasonSwitchoverRollback
	LeaseSerial uint64 // the lease serial the decision was made on
	Timeline    uint32 // the timeline the candidate reported (the lease's for a rollback)
	ReceivedLSN uint64 // what the candidate had received (0 for a rollback)
	// LeaseAnchor: the candidate answer's lease_anchor (0: none), so that
	// the promoted node's first lease runs from when it answered.
	LeaseAnchor uint64
	Details     string
}

// Promote builds the one Promote command: term st.Term+1 and the lease
// duration of the cluster settings, or defaultLease when the settings do
// not carry one (a cluster initialised before lease_ms existed).
func Promote(st *pb.ClusterState, p Promotion, defaultLease time.Duration) *pb.Command {
	leaseMs := st.GetSettings().GetLeaseMs()
	if leaseMs <= 0 {
		leaseMs = defaultLease.Milliseconds()
	}
	return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{
		NodeId: p.NodeID, Term: st.GetTerm() + 1, Reason: p.Reason, LeaseSerial: p.LeaseSerial,
		LeaseMs: leaseMs, Timeline: p.Timeline, ReceivedLsn: p.ReceivedLSN, LeaseAnchor: p.LeaseAnchor, Details: p.Details,
	}}}
}

// CandidateReceived is what a chosen candidate had received, as a Promote
// records it (ClusterState.sync_floor_lsn): the most of Choose's figure and
// its answer's receive and replay LSNs.
func CandidateReceived(c *Candidate) uint64 {
	return max(c.Received, c.Answer.GetPostgres().GetReceiveLsn(), c.Answer.GetPostgres().GetReplayLsn())
}
