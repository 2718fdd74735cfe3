package fsm

import (
	"strings"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// NodeByID returns the row with this id, or nil.
func NodeByID(st *pb.ClusterState, id uint32) *pb.Node {
	for _, n := range st.GetNodes() {
		if n.Id == id {
			return n
		}
	}
	return nil
}

// NodeByName returns the row with this name, or nil.
func NodeByName(st *pb.ClusterState, name string) *pb.Node {
	for _, n := range st.GetNodes() {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Primary returns the node whose role is primary, or nil.
func Primary(st *pb.ClusterState) *pb.Node {
	for _, n := range st.GetNodes() {
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			return n
		}
	}
	return nil
}

// HasTag reports whether the node carries the tag.
func HasTag(n *pb.Node, tag string) bool {
	for _, t := range n.GetTags() {
		if t == tag {
			return true
		}
	}
	return false
}

// SlotName is the physical replication slot a data node gets on the primary.
func SlotName(nodeName string) string {
	return "hasidecar_" + strings.ReplaceAll(strings.ToLower(nodeName), "-", "_")
}

// RoleName is the lower-case role ("primary", "standby", "witness", "unknown").
func RoleName(r pb.NodeRole) string {
	switch r {
	case pb.NodeRole_NODE_ROLE_PRIMARY:
		return "primary"
	case pb.NodeRole_NODE_ROLE_STANDBY:
		return "standby"
	case pb.NodeRole_NODE_ROLE_WITNESS:
		return "witness"
	}
	return "unknown"
}

// KindName is the lower-case kind ("data", "witness").
func KindName(k pb.NodeKind) string {
	switch k {
	case pb.NodeKind_NODE_KIND_DATA:
		return "data"
	case pb.NodeKind_NODE_KIND_WITNESS:
		return "witness"
	}
	return "unknown"
}

// MaxVoters is the cluster's cap on Raft voters (Settings.max_voters, or
// DefaultMaxVoters when unset).
func MaxVoters(s *pb.Settings) int {
	if v := s.GetMaxVoters(); v > 0 {
		return int(v)
	}
	return DefaultMaxVoters
}

// VoterReplaceAfter is how long a voter may be silent before the leader
// replaces it (Settings.voter_replace_after_ms, or DefaultVoterReplaceAfter).
func VoterReplaceAfter(s *pb.Settings) time.Duration {
	if v := s.GetVoterReplaceAfterMs(); v > 0 {
		return time.Duration(v) * time.Millisecond
	}
	return DefaultVoterReplaceAfter
}

// OnlyRenewed reports whether cur differs from prev by no more than lease
// renewals of the same lease: the same holder, term, release state and
// anchor, everything else in the state equal, only the renewal's own
// fields (serial, flush LSN, timeline, duration, renewal time) and the
// applied index moved. It is what a cluster at rest applies every
// lease/3; the reconciler need not plan again for it (node/keeper Run).
// Nil states count as different.
func OnlyRenewed(prev, cur *pb.ClusterState) bool {
	if prev == nil || cur == nil {
		return false
	}
	if prev == cur {
		return true
	}
	pl, cl := prev.GetLease(), cur.GetLease()
	if pl.GetHolderId() != cl.GetHolderId() || pl.GetTerm() != cl.GetTerm() ||
		pl.GetReleased() != cl.GetReleased() || pl.GetReleaseReason() != cl.GetReleaseReason() ||
		pl.GetAnchor() != cl.GetAnchor() || (pl == nil) != (cl == nil) {
		return false
	}
	// Compare every other field of the state: a field added later to
	// ClusterState is compared too, without a change here.
	pr, cr := prev.ProtoReflect(), cur.ProtoReflect()
	fields := pr.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f == leaseField || f == appliedIndexField {
			continue
		}
		if pr.Has(f) != cr.Has(f) {
			return false
		}
		if !pr.Has(f) {
			continue
		}
		if !pr.Get(f).Equal(cr.Get(f)) {
			return false
		}
	}
	return true
}

// The ClusterState fields OnlyRenewed treats apart.
var (
	leaseField        = (&pb.ClusterState{}).ProtoReflect().Descriptor().Fields().ByName("lease")
	appliedIndexField = (&pb.ClusterState{}).ProtoReflect().Descriptor().Fields().ByName("applied_index")
)
