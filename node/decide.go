package node

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Pure parts of the leader's failover decision (DESIGN.md "Choosing the new
// primary"); decider.go runs them against the live cluster.

// leaseExpired: the primary is failed only when its lease, as this node
// applied it, plus the drift margin has passed on this node's monotonic
// clock, or when the primary released it.
func leaseExpired(l *pb.Lease, appliedAt, now time.Time, driftPercent int) bool {
	if l == nil || l.HolderId == 0 {
		return false
	}
	if l.Released {
		return true
	}
	d := time.Duration(l.DurationMs) * time.Millisecond
	return now.After(appliedAt.Add(d + d*time.Duration(driftPercent)/100))
}

// promotable filters the nodes table: data standbys that are active, have a
// priority above zero and no nofailover tag. skipped says, by name, why each
// other data node was left out.
func promotable(st *pb.ClusterState) (cands []*pb.Node, skipped map[string]string) {
	skipped = map[string]string{}
	for _, n := range st.Nodes {
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			continue
		}
		switch {
		case n.Role != pb.NodeRole_NODE_ROLE_STANDBY:
			skipped[n.Name] = "not a registered standby"
		case !n.Active:
			skipped[n.Name] = "inactive (has not rejoined)"
		case n.Priority <= 0:
			skipped[n.Name] = "priority 0"
		case fsm.HasTag(n, "nofailover"):
			skipped[n.Name] = "tagged nofailover"
		default:
			cands = append(cands, n)
		}
	}
	return cands, skipped
}

// candidate is a promotable standby with the LSNs it reported when asked
// after the lease expired.
type candidate struct {
	Node     *pb.Node
	Answer   *pb.LSNResponse // nil: did not answer
	Received uint64
}

// choose picks the new primary among the candidates: only those that
// answered healthy, run in recovery on the primary's timeline and (in
// asynchronous mode) are within maxLag of the primary's last flush LSN; the
// highest received LSN wins, ties go to the higher priority, then the lower
// id. It returns nil with the reasons when nobody qualifies.
func choose(cands []candidate, lease *pb.Lease, maxLag uint64, synchronous bool) (*candidate, []string) {
	var ok []*candidate
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

func describeCandidates(cands []candidate) string {
	var parts []string
	for _, c := range cands {
		if c.Answer == nil {
			parts = append(parts, c.Node.Name+"=?")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s/tli%d", c.Node.Name, formatLSN(max(c.Answer.Postgres.GetReceiveLsn(), c.Answer.Postgres.GetReplayLsn())), c.Answer.Timeline))
	}
	return strings.Join(parts, " ")
}

func formatLSN(v uint64) string { return fmt.Sprintf("%X/%X", v>>32, uint32(v)) }

// chooseSync picks the new primary in synchronous mode. members are the
// whole committed synchronous set (promotable or not): any of them may hold
// the latest acknowledged write, so every one must have answered, and the
// winner — a promotable member — must have received at least as much as
// each of them, and at least floor (ClusterState.sync_floor_lsn: what the
// current primary had received when it was promoted; members kept in the
// set through that promotion may lag it, see node/sync.go).
func chooseSync(members []candidate, promotableIDs map[uint32]bool, lease *pb.Lease, floor uint64) (*candidate, []string) {
	if len(members) == 0 {
		return nil, []string{"synchronous mode and the synchronous set is empty: no standby is known to hold every acknowledged write"}
	}
	var most uint64
	var eligible []candidate
	for _, m := range members {
		a := m.Answer
		if a == nil || !a.Healthy {
			return nil, []string{fmt.Sprintf("%s: a synchronous standby did not answer; it may hold the latest acknowledged writes", m.Node.Name)}
		}
		most = max(most, a.Postgres.GetReceiveLsn(), a.Postgres.GetReplayLsn())
		if promotableIDs[m.Node.Id] {
			eligible = append(eligible, m)
		}
	}
	best, reasons := choose(eligible, lease, 0, true)
	if best == nil {
		return nil, reasons
	}
	if best.Received < most {
		return nil, append(reasons, fmt.Sprintf("a synchronous standby that cannot be promoted has received more WAL (%s) than %s (%s)", formatLSN(most), best.Node.Name, formatLSN(best.Received)))
	}
	if best.Received < floor {
		return nil, append(reasons, fmt.Sprintf("%s, the most advanced synchronous standby, has received %s, less than the %s the primary had when it was promoted: it may lack acknowledged writes (it has not streamed from the primary yet)", best.Node.Name, formatLSN(best.Received), formatLSN(floor)))
	}
	for i := range members {
		if members[i].Node.Id == best.Node.Id {
			members[i].Received = best.Received
			return &members[i], reasons
		}
	}
	return best, reasons
}

// syncMembers are the nodes of the committed synchronous set.
func syncMembers(st *pb.ClusterState) []*pb.Node {
	var out []*pb.Node
	for _, id := range st.SyncStandbys {
		if n := fsm.NodeByID(st, id); n != nil {
			out = append(out, n)
		}
	}
	return out
}
