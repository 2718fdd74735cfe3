package fsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/clusterconf"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func (a *applier) initCluster(c *pb.InitCluster) error {
	if c.ClusterName == "" {
		return errorf(CodeInvalidCommand, "init cluster: empty cluster name")
	}
	if a.st.ClusterName != "" {
		if a.st.ClusterName != c.ClusterName {
			return errorf(CodeClusterMismatch, "this is cluster %q, not %q", a.st.ClusterName, c.ClusterName)
		}
		return errorf(CodeConflict, "cluster %q is already initialised", a.st.ClusterName)
	}
	a.st.ClusterName = c.ClusterName
	if c.Settings != nil {
		a.st.Settings = cloneSettings(c.Settings)
	}
	return nil
}

func (a *applier) registerNode(c *pb.RegisterNode) (uint32, error) {
	if a.st.ClusterName == "" {
		return 0, errorf(CodeInvalidCommand, "register node %q: the cluster is not initialised", c.Name)
	}
	if c.ClusterName != a.st.ClusterName {
		return 0, errorf(CodeClusterMismatch, "node %q belongs to cluster %q, this is cluster %q", c.Name, c.ClusterName, a.st.ClusterName)
	}
	if c.Name == "" {
		return 0, errorf(CodeInvalidCommand, "register node: empty name")
	}
	if c.Kind != pb.NodeKind_NODE_KIND_DATA && c.Kind != pb.NodeKind_NODE_KIND_WITNESS {
		return 0, errorf(CodeInvalidCommand, "register node %q: unknown kind %v", c.Name, c.Kind)
	}
	for _, other := range a.st.Nodes {
		if other.Name == c.Name {
			continue
		}
		if c.RaftAddress != "" && other.RaftAddress == c.RaftAddress {
			return 0, errorf(CodeConflict, "node %q: raft address %s is already used by node %q", c.Name, c.RaftAddress, other.Name)
		}
		if c.GrpcAddress != "" && other.GrpcAddress == c.GrpcAddress {
			return 0, errorf(CodeConflict, "node %q: gRPC address %s is already used by node %q", c.Name, c.GrpcAddress, other.Name)
		}
	}
	if n := NodeByName(a.st, c.Name); n != nil {
		if n.Kind != c.Kind {
			return 0, errorf(CodeInvalidTransition, "node %q is registered as %s, not %s", c.Name, kindName(n.Kind), kindName(c.Kind))
		}
		n.Location, n.Priority, n.Conninfo = c.Location, c.Priority, c.Conninfo
		n.Tags = slices.Clone(c.Tags)
		n.RaftAddress, n.GrpcAddress, n.HttpAddress, n.Voter = c.RaftAddress, c.GrpcAddress, c.HttpAddress, c.Voter
		a.touch(n)
		return n.Id, nil
	}
	n := &pb.Node{
		Id:              a.st.NextNodeId,
		Name:            c.Name,
		Kind:            c.Kind,
		Location:        c.Location,
		Priority:        c.Priority,
		Conninfo:        c.Conninfo,
		Tags:            slices.Clone(c.Tags),
		RaftAddress:     c.RaftAddress,
		GrpcAddress:     c.GrpcAddress,
		HttpAddress:     c.HttpAddress,
		Voter:           c.Voter,
		RegisteredIndex: a.index,
		ModifiedIndex:   a.index,
	}
	a.st.NextNodeId++
	if c.Kind == pb.NodeKind_NODE_KIND_WITNESS {
		n.Role = pb.NodeRole_NODE_ROLE_WITNESS
		n.Active = true
	} else {
		n.SlotName = SlotName(c.Name)
	}
	a.st.Nodes = append(a.st.Nodes, n)
	slices.SortFunc(a.st.Nodes, func(x, y *pb.Node) int { return int(x.Id) - int(y.Id) })
	if n.Kind == pb.NodeKind_NODE_KIND_WITNESS {
		a.event(n.Id, EventWitnessRegister, true, fmt.Sprintf("witness %q registered", n.Name))
	} else {
		a.event(n.Id, EventNodeRegister, true, fmt.Sprintf("data node %q registered", n.Name))
	}
	return n.Id, nil
}

func (a *applier) removeNode(c *pb.RemoveNode) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "node %q is the primary: switch over to another node first", n.Name)
	}
	if sw := a.st.Switchover; sw != nil && (sw.FromId == n.Id || sw.ToId == n.Id) {
		return errorf(CodeConflict, "node %q takes part in a switchover in flight", n.Name)
	}
	if slices.Contains(a.st.SyncStandbys, n.Id) {
		return errorf(CodeConflict, "node %q is a synchronous standby: stop it first, and the primary takes it out of the synchronous set", n.Name)
	}
	typ := EventStandbyUnregister
	if n.Kind == pb.NodeKind_NODE_KIND_WITNESS {
		typ = EventWitnessUnregister
	}
	a.event(n.Id, typ, true, fmt.Sprintf("node %q removed", n.Name))
	a.st.Nodes = slices.DeleteFunc(a.st.Nodes, func(x *pb.Node) bool { return x.Id == n.Id })
	primary := Primary(a.st)
	for _, o := range a.st.Nodes {
		if o.UpstreamId == n.Id {
			o.UpstreamId = 0
			if primary != nil {
				o.UpstreamId = primary.Id
			}
			a.touch(o)
		}
	}
	return nil
}

func (a *applier) setSystemIdentifier(c *pb.SetSystemIdentifier) error {
	if c.SystemIdentifier == 0 {
		return errorf(CodeInvalidCommand, "system identifier 0")
	}
	if a.st.SystemIdentifier != 0 && a.st.SystemIdentifier != c.SystemIdentifier {
		return errorf(CodeClusterMismatch, "Postgres system identifier %d differs from the cluster's %d", c.SystemIdentifier, a.st.SystemIdentifier)
	}
	a.st.SystemIdentifier = c.SystemIdentifier
	return nil
}

func (a *applier) registerPrimary(c *pb.RegisterPrimary) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if n.Kind != pb.NodeKind_NODE_KIND_DATA {
		return errorf(CodeInvalidTransition, "node %q is a witness and cannot be primary", n.Name)
	}
	if p := Primary(a.st); p != nil {
		if p.Id == n.Id {
			return errorf(CodeConflict, "node %q is already the primary in term %d", n.Name, a.st.Term)
		}
		return errorf(CodeInvalidTransition, "node %q is already the primary in term %d", p.Name, a.st.Term)
	}
	if a.st.Term != 0 {
		return errorf(CodeStaleTerm, "the cluster is in term %d: a primary is registered only at bootstrap", a.st.Term)
	}
	if c.LeaseMs <= 0 {
		return errorf(CodeInvalidCommand, "register primary: lease duration must be positive")
	}
	a.st.Term = 1
	a.st.TermIndex = a.index
	n.Role, n.UpstreamId, n.Active, n.RoleTerm = pb.NodeRole_NODE_ROLE_PRIMARY, 0, true, 1
	a.touch(n)
	a.st.Lease = &pb.Lease{HolderId: n.Id, Term: 1, Serial: a.st.Lease.GetSerial() + 1, DurationMs: c.LeaseMs, RenewedAtUnixMs: a.at}
	a.event(n.Id, EventPrimaryRegister, true, fmt.Sprintf("node %q registered as primary in term 1", n.Name))
	return nil
}

func (a *applier) promote(c *pb.Promote) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if c.Term != a.st.Term+1 {
		return errorf(CodeStaleTerm, "promotion of %q names term %d, the next term is %d", n.Name, c.Term, a.st.Term+1)
	}
	if c.LeaseSerial != a.st.Lease.GetSerial() {
		return errorf(CodeStaleTerm, "promotion of %q was decided on lease serial %d, the lease is now at serial %d", n.Name, c.LeaseSerial, a.st.Lease.GetSerial())
	}
	if n.Kind != pb.NodeKind_NODE_KIND_DATA {
		return errorf(CodeInvalidTransition, "node %q is a witness and cannot be promoted", n.Name)
	}
	if c.LeaseMs <= 0 {
		return errorf(CodeInvalidCommand, "promotion of %q: lease duration must be positive", n.Name)
	}
	reason := c.Reason
	if reason == ReasonSwitchoverRollback {
		return a.rollbackSwitchover(n, c)
	}
	if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "node %q is already the primary", n.Name)
	}
	switch reason {
	case EventFailover, EventSwitchover, ReasonManual:
	default:
		return errorf(CodeInvalidCommand, "promotion of %q: unknown reason %q", n.Name, reason)
	}
	if sw := a.st.Switchover; sw != nil && (reason != EventSwitchover || sw.ToId != n.Id) {
		return errorf(CodeConflict, "a switchover from node %d to node %d is in flight", sw.FromId, sw.ToId)
	}
	old := Primary(a.st)
	a.st.Term = c.Term
	a.st.TermIndex = a.index
	if old != nil {
		old.Role, old.UpstreamId, old.Active, old.RoleTerm = pb.NodeRole_NODE_ROLE_STANDBY, n.Id, false, c.Term
		a.touch(old)
	}
	for _, o := range a.st.Nodes {
		if o.Kind == pb.NodeKind_NODE_KIND_DATA && o.Id != n.Id && o.UpstreamId != 0 && o.UpstreamId != n.Id {
			o.UpstreamId = n.Id
			a.touch(o)
		}
	}
	n.Role, n.UpstreamId, n.Active, n.RoleTerm = pb.NodeRole_NODE_ROLE_PRIMARY, 0, true, c.Term
	a.touch(n)
	a.st.Lease = &pb.Lease{HolderId: n.Id, Term: c.Term, Serial: a.st.Lease.GetSerial() + 1, DurationMs: c.LeaseMs, RenewedAtUnixMs: a.at, Timeline: c.Timeline, Anchor: c.LeaseAnchor}
	// Synchronous mode: the other members of the committed set stay in it
	// (minus the promoted node), so that the new primary, whose
	// synchronous_standby_names names them before pg_promote, acknowledges
	// no write before one of them streamed it, and a failure right after
	// the promotion can still fail over. A member may lag the promoted node
	// (ANY 1: only one member is sure to hold each write), so the floor
	// records what the new primary had received when chosen: the next
	// failover promotes a member only if it got at least that far (see
	// node/keeper/sync.go for the whole argument).
	// The count goes down to what is left (PromotedSyncCount): n's
	// Postgres runs with at least that many before pg_promote.
	a.st.SyncCount = uint32(PromotedSyncCount(a.st, n.Id))
	a.st.SyncStandbys = slices.DeleteFunc(slices.Clone(a.st.SyncStandbys), func(id uint32) bool { return id == n.Id })
	if len(a.st.SyncStandbys) == 0 {
		a.st.SyncStandbys = nil
	}
	a.st.SyncFloorLsn = c.ReceivedLsn
	from := "none"
	if old != nil {
		from = fmt.Sprintf("%q", old.Name)
	}
	details := fmt.Sprintf("%s from %s to %q decided in term %d", reason, from, n.Name, c.Term)
	if c.Details != "" {
		details += ": " + c.Details
	}
	typ := reason
	if reason == ReasonManual {
		typ = EventFailover
	}
	// The decision is recorded here; the promoted node's sidecar records
	// standby_promote once Postgres has really been promoted.
	a.event(n.Id, typ, true, details)
	if reason == EventSwitchover {
		a.st.Switchover = nil
	}
	return nil
}

// ReasonSwitchoverRollback: a switchover whose target did not promote in
// time gives the old primary back its role in a new term, so that any
// action planned for the aborted switchover is stale.
const ReasonSwitchoverRollback = "switchover_rollback"

func (a *applier) rollbackSwitchover(n *pb.Node, c *pb.Promote) error {
	sw := a.st.Switchover
	if sw == nil || sw.FromId != n.Id || n.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "no switchover from %q to roll back", n.Name)
	}
	a.st.Term = c.Term
	a.st.TermIndex = a.index
	n.RoleTerm, n.Active = c.Term, true
	a.touch(n)
	a.st.Lease = &pb.Lease{HolderId: n.Id, Term: c.Term, Serial: a.st.Lease.GetSerial() + 1, DurationMs: c.LeaseMs, RenewedAtUnixMs: a.at, Timeline: c.Timeline}
	a.st.Switchover = nil
	details := fmt.Sprintf("switchover from %q rolled back: %q is the primary again in term %d", n.Name, n.Name, c.Term)
	if c.Details != "" {
		details += ": " + c.Details
	}
	a.event(sw.ToId, EventSwitchover, false, details)
	return nil
}

// holder checks that node is the lease holder and primary in term.
func (a *applier) holder(nodeID uint32, term uint64, what string) (*pb.Node, error) {
	n, err := a.node(nodeID)
	if err != nil {
		return nil, err
	}
	if err := a.checkTerm(term, what); err != nil {
		return nil, err
	}
	if n.Role != pb.NodeRole_NODE_ROLE_PRIMARY || a.st.Lease.GetHolderId() != n.Id {
		return nil, errorf(CodeInvalidTransition, "%s: node %q does not hold the lease in term %d", what, n.Name, a.st.Term)
	}
	return n, nil
}

func (a *applier) renewLease(c *pb.RenewLease) error {
	if _, err := a.holder(c.NodeId, c.Term, "lease renewal"); err != nil {
		return err
	}
	if c.DurationMs <= 0 {
		return errorf(CodeInvalidCommand, "lease renewal: duration must be positive")
	}
	l := a.st.Lease
	l.Serial++
	l.FlushLsn = c.FlushLsn
	l.Timeline = c.Timeline
	l.DurationMs = c.DurationMs
	l.RenewedAtUnixMs = a.at
	l.Released, l.ReleaseReason = false, ""
	l.Anchor = 0
	return nil
}

func (a *applier) releaseLease(c *pb.ReleaseLease) error {
	n, err := a.holder(c.NodeId, c.Term, "lease release")
	if err != nil {
		return err
	}
	if a.st.Lease.Released {
		return nil
	}
	a.st.Lease.Released = true
	a.st.Lease.ReleaseReason = c.Reason
	a.event(n.Id, EventLeaseRelease, true, c.Reason)
	return nil
}

func (a *applier) recordEvent(c *pb.RecordEvent) error {
	if c.Type == "" {
		return errorf(CodeInvalidCommand, "event without a type")
	}
	if c.NodeId != 0 {
		if _, err := a.node(c.NodeId); err != nil {
			return err
		}
	}
	if c.Term != 0 && c.Term < a.st.Term {
		return errorf(CodeStaleTerm, "event %s names term %d, the cluster is in term %d", c.Type, c.Term, a.st.Term)
	}
	a.event(c.NodeId, c.Type, c.Ok, c.Details)
	return nil
}

func (a *applier) setStandby(c *pb.SetStandby) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if err := a.checkTerm(c.Term, "standby registration of "+n.Name); err != nil {
		return err
	}
	if n.Kind != pb.NodeKind_NODE_KIND_DATA {
		return errorf(CodeInvalidTransition, "node %q is a witness and cannot be a standby", n.Name)
	}
	if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "node %q is the primary in term %d and cannot become a standby", n.Name, a.st.Term)
	}
	p := Primary(a.st)
	if p == nil || p.Id != c.UpstreamId {
		return errorf(CodeInvalidTransition, "standby %q: upstream node %d is not the primary", n.Name, c.UpstreamId)
	}
	if n.NeedsReclone {
		return errorf(CodeInvalidTransition, "standby %q needs a re-clone (%s): it follows again only after cloning afresh", n.Name, n.NeedsRecloneReason)
	}
	typ := c.EventType
	switch typ {
	case "":
		typ = EventStandbyRegister
	case EventStandbyRegister, EventStandbyFollow, EventNodeRejoin:
	default:
		return errorf(CodeInvalidCommand, "standby %q: unknown event type %q", n.Name, typ)
	}
	if n.Role == pb.NodeRole_NODE_ROLE_STANDBY && n.UpstreamId == c.UpstreamId && n.Active &&
		(c.SlotName == "" || c.SlotName == n.SlotName) {
		return nil // already so: nothing to record
	}
	if n.Role != pb.NodeRole_NODE_ROLE_STANDBY {
		n.RoleTerm = a.st.Term
	}
	n.Role, n.UpstreamId, n.Active = pb.NodeRole_NODE_ROLE_STANDBY, c.UpstreamId, true
	if c.SlotName != "" {
		n.SlotName = c.SlotName
	}
	a.touch(n)
	details := c.Details
	if details == "" {
		details = fmt.Sprintf("node %q is a standby of %q in term %d", n.Name, p.Name, a.st.Term)
	}
	a.event(n.Id, typ, true, details)
	return nil
}

// setNeedsReclone marks a standby whose slot the primary drops (proposed
// by the primary of the term, primary_id) or clears the mark once the node
// cloned afresh (proposed by the node itself, primary_id 0). A marked node
// cannot register as a standby (setStandby) until it is cleared.
func (a *applier) setNeedsReclone(c *pb.SetNeedsReclone) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if err := a.checkTerm(c.Term, "re-clone mark of "+n.Name); err != nil {
		return err
	}
	if n.Kind != pb.NodeKind_NODE_KIND_DATA {
		return errorf(CodeInvalidCommand, "node %q is a witness: it has no slot and nothing to clone", n.Name)
	}
	if !c.NeedsReclone {
		if c.PrimaryId != 0 {
			return errorf(CodeInvalidCommand, "the re-clone mark of %q is cleared by %q itself, after it cloned", n.Name, n.Name)
		}
		if !n.NeedsReclone {
			return nil
		}
		n.NeedsReclone, n.NeedsRecloneReason = false, ""
		a.touch(n)
		a.event(n.Id, EventRecloned, true, fmt.Sprintf("%q cloned afresh from the primary", n.Name))
		return nil
	}
	p := Primary(a.st)
	if p == nil || p.Id != c.PrimaryId {
		return errorf(CodeInvalidTransition, "re-clone mark of %q: node %d is not the primary in term %d", n.Name, c.PrimaryId, a.st.Term)
	}
	if n.Id == p.Id {
		return errorf(CodeInvalidTransition, "node %q is the primary: it cannot need a re-clone", n.Name)
	}
	if n.NeedsReclone {
		return nil
	}
	n.NeedsReclone, n.NeedsRecloneReason = true, c.Reason
	a.touch(n)
	a.event(n.Id, EventNeedsReclone, true, fmt.Sprintf("%q needs a re-clone from %q: %s", n.Name, p.Name, c.Reason))
	return nil
}

// setMaintenance puts a standby into maintenance or takes it out. The
// primary is refused (pausing the cluster is what keeps it from failing
// over: `hasidecar pause`), and so is a witness (nothing to leave alone).
func (a *applier) setMaintenance(c *pb.SetMaintenance) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if err := a.checkTerm(c.Term, "maintenance of "+n.Name); err != nil {
		return err
	}
	if n.Kind != pb.NodeKind_NODE_KIND_DATA {
		return errorf(CodeInvalidCommand, "node %q is a witness: it has no Postgres to leave alone", n.Name)
	}
	if c.On && n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "node %q is the primary: switch over first, or pause the whole cluster (`hasidecar pause`)", n.Name)
	}
	if n.Maintenance == c.On {
		return nil
	}
	n.Maintenance, n.MaintenanceReason = c.On, ""
	details := fmt.Sprintf("%q is out of maintenance: its keeper manages its Postgres again", n.Name)
	if c.On {
		n.MaintenanceReason = c.Reason
		details = fmt.Sprintf("%q is in maintenance: its keeper leaves its Postgres alone and it is never a failover candidate", n.Name)
		if c.Reason != "" {
			details += " (" + c.Reason + ")"
		}
	}
	a.touch(n)
	a.event(n.Id, EventMaintenance, true, details)
	return nil
}

// setVoter records a change of a member's suffrage the Raft leader made
// (or found): the row's voter flag follows Raft's configuration, and every
// SetVoter records voter_added or voter_demoted.
func (a *applier) setVoter(c *pb.SetVoter) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	n.Voter = c.Voter
	a.touch(n)
	typ, details := EventVoterDemoted, fmt.Sprintf("%q is a non-voter", n.Name)
	if c.Voter {
		typ, details = EventVoterAdded, fmt.Sprintf("%q is a voter", n.Name)
	}
	if c.Details != "" {
		details += ": " + c.Details
	}
	a.event(n.Id, typ, true, details)
	return nil
}

func (a *applier) setNodeActive(c *pb.SetNodeActive) error {
	n, err := a.node(c.NodeId)
	if err != nil {
		return err
	}
	if err := a.checkTerm(c.Term, "activation of "+n.Name); err != nil {
		return err
	}
	if n.Active == c.Active {
		return nil
	}
	if !c.Active && n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "node %q is the primary: it is deactivated only by a promotion of another node", n.Name)
	}
	n.Active = c.Active
	a.touch(n)
	typ := EventNodeInactive
	if c.Active {
		typ = EventNodeActive
	}
	a.event(n.Id, typ, true, c.Details)
	return nil
}

func (a *applier) setSettings(c *pb.SetSettings) error {
	s := a.st.Settings
	var changes []string
	if c.Paused != nil && *c.Paused != s.Paused {
		s.Paused = *c.Paused
		if s.Paused {
			a.event(0, EventClusterPause, true, "automatic failover paused")
		} else {
			a.event(0, EventClusterUnpause, true, "automatic failover resumed")
		}
	}
	if c.FailoverMode != nil {
		if *c.FailoverMode != pb.FailoverMode_FAILOVER_MODE_AUTOMATIC && *c.FailoverMode != pb.FailoverMode_FAILOVER_MODE_MANUAL {
			return errorf(CodeInvalidCommand, "unknown failover mode %v", *c.FailoverMode)
		}
		s.FailoverMode = *c.FailoverMode
		changes = append(changes, "failover_mode="+strings.ToLower(strings.TrimPrefix(c.FailoverMode.String(), "FAILOVER_MODE_")))
	}
	if c.Synchronous != nil {
		s.Synchronous = *c.Synchronous
		changes = append(changes, fmt.Sprintf("synchronous=%t", *c.Synchronous))
	}
	if c.EventMaxCount != nil {
		if *c.EventMaxCount < 1 {
			return errorf(CodeInvalidCommand, "event_max_count must be at least 1")
		}
		s.EventMaxCount = *c.EventMaxCount
		changes = append(changes, fmt.Sprintf("event_max_count=%d", *c.EventMaxCount))
	}
	if c.EventMaxAgeMs != nil {
		if *c.EventMaxAgeMs < 0 {
			return errorf(CodeInvalidCommand, "event_max_age must not be negative")
		}
		s.EventMaxAgeMs = *c.EventMaxAgeMs
		changes = append(changes, fmt.Sprintf("event_max_age_ms=%d", *c.EventMaxAgeMs))
	}
	if c.MaximumLagOnFailover != nil {
		s.MaximumLagOnFailover = *c.MaximumLagOnFailover
		changes = append(changes, fmt.Sprintf("maximum_lag_on_failover=%d", *c.MaximumLagOnFailover))
	}
	if c.LeaseMs != nil {
		if *c.LeaseMs <= 0 {
			return errorf(CodeInvalidCommand, "lease must be positive")
		}
		s.LeaseMs = *c.LeaseMs
		changes = append(changes, fmt.Sprintf("lease_ms=%d", *c.LeaseMs))
	}
	if c.StorageFailureFailoverMs != nil {
		if *c.StorageFailureFailoverMs < 0 {
			return errorf(CodeInvalidCommand, "failover_on_storage_failure must not be negative")
		}
		s.StorageFailureFailoverMs = *c.StorageFailureFailoverMs
		changes = append(changes, fmt.Sprintf("storage_failure_failover_ms=%d", *c.StorageFailureFailoverMs))
	}
	if len(changes) > 0 {
		s.ConfigVersion++
		a.event(0, EventSettings, true, strings.Join(changes, " "))
	}
	return nil
}

// setConfig: compare-and-set on the configuration version, every change
// validated by the key table (clusterconf.Apply), one event listing them.
// A command that changes no value is accepted and changes nothing.
func (a *applier) setConfig(c *pb.SetConfig) error {
	cur := a.st.Settings
	if c.Version != cur.GetConfigVersion() {
		return errorf(CodeConflict, "the configuration is at version %d, not %d: it changed since it was read; read it again and redo the change", cur.GetConfigVersion(), c.Version)
	}
	next, diffs, err := clusterconf.Apply(cur, c.Changes)
	if err != nil {
		return errorf(CodeInvalidCommand, "%v", err)
	}
	if len(diffs) == 0 {
		return nil
	}
	if err := CheckSettings(a.st, next); err != nil {
		return errorf(CodeInvalidCommand, "%v", err)
	}
	next.ConfigVersion++
	a.st.Settings = next
	a.event(0, EventConfigChanged, true, clusterconf.Details(next.ConfigVersion, diffs))
	return nil
}

func (a *applier) beginSwitchover(c *pb.BeginSwitchover) error {
	if err := a.checkTerm(c.Term, "switchover"); err != nil {
		return err
	}
	if sw := a.st.Switchover; sw != nil {
		return errorf(CodeConflict, "a switchover from node %d to node %d is already in flight", sw.FromId, sw.ToId)
	}
	from, err := a.node(c.FromId)
	if err != nil {
		return err
	}
	to, err := a.node(c.ToId)
	if err != nil {
		return err
	}
	if from.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return errorf(CodeInvalidTransition, "switchover: node %q is not the primary", from.Name)
	}
	if to.Kind != pb.NodeKind_NODE_KIND_DATA || to.Role != pb.NodeRole_NODE_ROLE_STANDBY || !to.Active {
		return errorf(CodeInvalidTransition, "switchover: node %q is not an active standby", to.Name)
	}
	a.st.Switchover = &pb.Switchover{FromId: from.Id, ToId: to.Id, Term: c.Term, StartedAtUnixMs: a.at, DeadlineUnixMs: c.DeadlineUnixMs, Index: a.index}
	a.event(to.Id, EventSwitchoverStart, true, fmt.Sprintf("switchover from %q to %q begun in term %d", from.Name, to.Name, c.Term))
	return nil
}

func (a *applier) switchover(term uint64) (*pb.Switchover, error) {
	sw := a.st.Switchover
	if sw == nil {
		return nil, errorf(CodeConflict, "no switchover in flight")
	}
	if sw.Term != term {
		return nil, errorf(CodeStaleTerm, "the switchover in flight began in term %d, not %d", sw.Term, term)
	}
	return sw, nil
}

func (a *applier) updateSwitchover(c *pb.UpdateSwitchover) error {
	sw, err := a.switchover(c.Term)
	if err != nil {
		return err
	}
	if sw.ShutdownLsn != 0 && c.ShutdownLsn != sw.ShutdownLsn {
		// The leader may already have promoted on the first one.
		return errorf(CodeConflict, "the switchover's shutdown checkpoint is already %s; %s differs", FormatLSN(sw.ShutdownLsn), FormatLSN(c.ShutdownLsn))
	}
	sw.ShutdownLsn = c.ShutdownLsn
	return nil
}

func (a *applier) endSwitchover(c *pb.EndSwitchover) error {
	sw, err := a.switchover(c.Term)
	if err != nil {
		return err
	}
	a.st.Switchover = nil
	a.event(sw.ToId, EventSwitchover, c.Ok, c.Details)
	return nil
}

func (a *applier) setSyncStandbys(c *pb.SetSyncStandbys) error {
	return a.setSyncQuorum(&pb.SetSyncQuorum{Term: c.Term, PrimaryId: c.PrimaryId, NodeIds: c.NodeIds, Count: uint32(SyncCount(a.st))})
}

// setSyncQuorum commits the synchronous set and its count together (the
// primary's steps: node/keeper/sync.go). The count is at least 1 and at
// most the set's size, so that a failover always needs an answer; an
// event sync_standbys on a change, and synchronous_degraded when the
// warning (SyncWarning) appears or changes.
func (a *applier) setSyncQuorum(c *pb.SetSyncQuorum) error {
	if err := a.checkTerm(c.Term, "synchronous set"); err != nil {
		return err
	}
	p := Primary(a.st)
	if p == nil || p.Id != c.PrimaryId {
		return errorf(CodeInvalidTransition, "synchronous set: node %d is not the primary", c.PrimaryId)
	}
	ids := slices.Clone(c.NodeIds)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var names []string
	for _, id := range ids {
		n, err := a.node(id)
		if err != nil {
			return err
		}
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Id == p.Id {
			return errorf(CodeInvalidTransition, "synchronous set: node %q is not a standby", n.Name)
		}
		names = append(names, n.Name)
	}
	k := max(c.Count, 1)
	if len(ids) == 0 {
		k = 0
	} else if int(k) > len(ids) {
		return errorf(CodeInvalidCommand, "synchronous set: count %d is more than its %d members", k, len(ids))
	}
	if slices.Equal(ids, a.st.SyncStandbys) && int(k) == CommittedSyncCount(a.st) {
		return nil
	}
	before := SyncWarning(a.st)
	a.st.SyncStandbys, a.st.SyncCount = ids, k
	if len(ids) == 0 {
		a.st.SyncStandbys = nil
	}
	list := strings.Join(names, ", ")
	if list == "" {
		list = "none (no automatic failover until a standby is back in the set)"
	} else {
		list = fmt.Sprintf("ANY %d (%s)", k, list)
	}
	a.event(p.Id, EventSyncStandbys, true, "synchronous standbys: "+list)
	if w := SyncWarning(a.st); w != "" && w != before {
		a.event(p.Id, EventSyncDegraded, false, w)
	}
	return nil
}

func cloneSettings(s *pb.Settings) *pb.Settings {
	return proto.Clone(s).(*pb.Settings)
}

func kindName(k pb.NodeKind) string {
	switch k {
	case pb.NodeKind_NODE_KIND_DATA:
		return "a data node"
	case pb.NodeKind_NODE_KIND_WITNESS:
		return "a witness"
	}
	return k.String()
}

// Urgent says whether the leader pushes cmd's commit to followers at once
// (node/ issues a Raft barrier after it) instead of letting them learn it
// with the next replication round, up to 2 × raft CommitTimeout later:
// every command but the lease renewal, the one command of a cluster at
// rest, which only the proposer (answered by the leader) and the leader's
// decider act on. Followers act on the others as soon as they apply them
// (a promotion, a switchover's steps, a standby's new upstream) or show
// them (events, roles).
func Urgent(cmd *pb.Command) bool {
	_, renewal := cmd.Cmd.(*pb.Command_RenewLease)
	return !renewal
}
