package fsm

import (
	"fmt"
	"strings"

	"github.com/hasidecar/hasidecar/clusterconf"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Pure queries of synchronous mode with a count (node/keeper/sync.go has
// the invariant and the order of the primary's steps): the committed set
// S_f with its count k_f, what a failover needs of it, the count a promoted
// member runs with, the bound on synchronous_count and the degraded warning.

// EventSyncDegraded: the committed set or count fell below what the
// settings ask for (synchronous: on narrows instead of waiting), or, in
// strict mode, the set holds fewer members than synchronous_count.
const EventSyncDegraded = "synchronous_degraded"

// SyncCount is the committed count k_f of the synchronous set: every
// acknowledged commit is on at least k_f members (1 on a cluster that
// never recorded one), at most the set's size.
func SyncCount(st *pb.ClusterState) int {
	n := len(st.GetSyncStandbys())
	return min(max(int(st.GetSyncCount()), 1), max(n, 1))
}

// CommittedSyncCount is SyncCount, 0 for an empty set.
func CommittedSyncCount(st *pb.ClusterState) int {
	if len(st.GetSyncStandbys()) == 0 {
		return 0
	}
	return SyncCount(st)
}

// SyncAnswersNeeded is how many members of a set of n with count k must
// answer before a failover may choose: n − k + 1. Every acknowledged write
// is on k members, so at most n − k lack it, and any n − k + 1 include one
// that holds it.
func SyncAnswersNeeded(n, k int) int {
	return max(n-k+1, 1)
}

// PromotedSyncCount is the count a Promote of node id records (and the one
// that member's Postgres runs with before pg_promote): k_f, at most the
// members left once id is out of the set (0 when none is left).
func PromotedSyncCount(st *pb.ClusterState, id uint32) int {
	n := 0
	for _, m := range st.GetSyncStandbys() {
		if m != id {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return min(SyncCount(st), n)
}

// MaxSyncCount is the largest synchronous_count the cluster can meet: its
// data nodes minus the primary.
func MaxSyncCount(st *pb.ClusterState) int {
	data := 0
	for _, n := range st.GetNodes() {
		if n.Kind == pb.NodeKind_NODE_KIND_DATA {
			data++
		}
	}
	return max(data-1, 0)
}

// CheckSettings refuses settings the cluster cannot meet: a
// synchronous_count larger than the standbys that could be in the set.
// Only a change of synchronous_count is checked (a cluster that lost data
// nodes keeps its value, and `on` narrows to what it has).
func CheckSettings(st *pb.ClusterState, next *pb.Settings) error {
	k := clusterconf.SyncCount(next)
	if k == clusterconf.SyncCount(st.GetSettings()) {
		return nil
	}
	if limit := MaxSyncCount(st); k > limit {
		return fmt.Errorf("synchronous_count: %d is more than the %d standbys that could be in the synchronous set (%d data nodes minus the primary); use at most %d or add data nodes first", k, limit, limit+1, limit)
	}
	return nil
}

// SyncWarning is the warning `cluster show` prints for synchronous mode
// ("" none): on, degraded below synchronous_count (or to asynchronous
// commits when the set is empty); strict, with fewer members than
// synchronous_count (commits wait).
func SyncWarning(st *pb.ClusterState) string {
	s := st.GetSettings()
	if !s.GetSynchronous() || Primary(st) == nil {
		return ""
	}
	want, n := clusterconf.SyncCount(s), len(st.GetSyncStandbys())
	switch {
	case s.GetSynchronousStrict() && n < want:
		return fmt.Sprintf("synchronous strict: the synchronous set has %d members, fewer than synchronous_count %d: commits wait until enough standbys stream", n, want)
	case s.GetSynchronousStrict():
		return ""
	case n == 0:
		return "synchronous degraded: no standby in the synchronous set, commits are asynchronous and no automatic failover happens"
	case SyncCount(st) < want:
		return fmt.Sprintf("synchronous degraded: commits wait for %d of the synchronous set (%s), fewer than synchronous_count %d", SyncCount(st), strings.Join(syncNames(st), ", "), want)
	}
	return ""
}

func syncNames(st *pb.ClusterState) []string {
	var out []string
	for _, n := range SyncMembers(st) {
		out = append(out, n.Name)
	}
	return out
}
