package fsm

import pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"

// FormerPrimary says whether n is an inactive standby that a promotion of
// another node demoted, in term (its RoleTerm): the promotion sets the old
// primary's role to standby, inactive, in the new term, and rejoining makes
// it active again. A standby that never was primary has no role term; one
// that rejoined after a demotion and was made inactive later still counts
// as the former primary of that term.
func FormerPrimary(n *pb.Node) (term uint64, ok bool) {
	if n.GetKind() == pb.NodeKind_NODE_KIND_DATA && n.GetRole() == pb.NodeRole_NODE_ROLE_STANDBY && !n.GetActive() && n.GetRoleTerm() > 0 {
		return n.GetRoleTerm(), true
	}
	return 0, false
}
