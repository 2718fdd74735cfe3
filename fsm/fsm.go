package fsm

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Defaults applied when the settings leave a value at zero.
const (
	DefaultEventMaxCount = 1000
	// DefaultMaxVoters and DefaultVoterReplaceAfter stand for Settings'
	// max_voters and voter_replace_after_ms at zero (a cluster created
	// before they existed); config's raft.max_voters and
	// raft.voter_replace_after default to the same.
	DefaultMaxVoters         = 5
	DefaultVoterReplaceAfter = 30 * time.Second
)

// Event types, named after repmgr's where one exists.
const (
	EventPrimaryRegister   = "primary_register"
	EventStandbyRegister   = "standby_register"
	EventStandbyPromote    = "standby_promote"
	EventStandbyFollow     = "standby_follow"
	EventStandbyUnregister = "standby_unregister"
	EventWitnessRegister   = "witness_register"
	EventWitnessUnregister = "witness_unregister"
	EventNodeRegister      = "node_register"
	EventNodeRejoin        = "node_rejoin"
	EventNodeRewind        = "node_rewind"
	// EventPostgresRestart: Postgres stopped without the sidecar asking
	// (a crash, a pg_ctl stop behind its back) and the sidecar started it
	// again in place.
	EventPostgresRestart = "postgres_restart"
	// EventPostgresAdopt: a restarted sidecar took over the postmaster
	// (and its guard) that the previous sidecar on the host left running.
	EventPostgresAdopt   = "postgres_adopt"
	EventDataDirSetAside = "data_dir_set_aside" // moved aside for a re-clone; older copies deleted
	EventNeedsReclone    = "needs_reclone"      // a standby must clone afresh: its slot was dropped (slot_retention, max_slot_wal_keep_size), or `hasidecar reinit`
	EventRecloned        = "node_recloned"      // a node marked needs_reclone cloned afresh
	EventMaintenance     = "node_maintenance"   // `hasidecar node maintenance on|off`
	EventFailover        = "failover"
	EventSwitchover      = "switchover"
	EventSwitchoverStart = "switchover_start"
	EventFence           = "fence"
	EventLeaseRelease    = "lease_release"
	EventClusterPause    = "cluster_pause"
	EventClusterUnpause  = "cluster_unpause"
	EventSettings        = "cluster_settings"
	// EventConfigChanged: a SetConfig changed the runtime cluster
	// configuration; details are clusterconf.Details (the new version and
	// each key's old → new value).
	EventConfigChanged = "config_changed"
	EventNodeActive    = "node_active"
	EventNodeInactive  = "node_inactive"
	EventSyncStandbys  = "sync_standbys"
	EventDiskFull      = "disk_full" // free space below postgres.disk_full_threshold, or a write failed for lack of space
	EventDiskOK        = "disk_ok"   // the disk_full condition ended
	// EventStorageFailure: the primary's disk stayed full for
	// failover_on_storage_failure: it fenced itself and released its lease
	// (ok), or stayed primary for want of a healthy standby (not ok).
	EventStorageFailure = "storage_failure"
	EventClusterCreated = "cluster_created" // initdb of a new cluster by the bootstrap primary
	// Recorded by the Raft leader, once per lease serial, when a primary
	// failed and no promotion follows: the cluster is paused, failover is
	// manual, or no standby qualifies.
	EventFailoverPaused  = "failover_paused"
	EventFailoverPending = "failover_pending"
	EventFailoverBlocked = "failover_blocked"
	// Recorded by the Raft leader with each change of a member's suffrage
	// (SetVoter): a non-voter promoted to voter, a voter demoted.
	EventVoterAdded   = "voter_added"
	EventVoterDemoted = "voter_demoted"
)

// Promotion reasons (Promote.reason) besides EventFailover and
// EventSwitchover: ReasonManual is `hasidecar failover --to`.
const ReasonManual = "manual"

// Result is what Apply returns for one command.
type Result struct {
	Index  uint64
	NodeID uint32 // RegisterNode: the id of the (new or existing) node
	Err    error  // nil, or an *Error; the state is unchanged when set
}

// Machine holds the state. It is not safe for concurrent use: the caller
// (node's raft.FSM adapter) serialises Apply, Snapshot and Restore.
type Machine struct {
	st *pb.ClusterState
}

// New returns an empty machine.
func New() *Machine {
	return &Machine{st: emptyState()}
}

func emptyState() *pb.ClusterState {
	return &pb.ClusterState{
		Lease:       &pb.Lease{},
		Settings:    &pb.Settings{},
		NextNodeId:  1,
		NextEventId: 1,
	}
}

// State returns a deep copy of the current state.
func (m *Machine) State() *pb.ClusterState {
	return proto.Clone(m.st).(*pb.ClusterState)
}

// AppliedIndex is the log index of the last applied command.
func (m *Machine) AppliedIndex() uint64 { return m.st.AppliedIndex }

// Snapshot returns the state encoded deterministically.
func (m *Machine) Snapshot() ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.st)
	if err != nil {
		return nil, fmt.Errorf("encode fsm snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces all state with the snapshot's. A snapshot that does not
// decode, or decodes to something no sequence of commands produces, is
// refused whole: the error leaves the previous state as it was, never half
// replaced.
func (m *Machine) Restore(data []byte) error {
	st := &pb.ClusterState{}
	if err := proto.Unmarshal(data, st); err != nil {
		return fmt.Errorf("decode fsm snapshot: %w", err)
	}
	if err := checkSnapshot(st); err != nil {
		return fmt.Errorf("decode fsm snapshot (%d bytes): %w", len(data), err)
	}
	if st.Lease == nil {
		st.Lease = &pb.Lease{}
	}
	if st.Settings == nil {
		st.Settings = &pb.Settings{}
	}
	m.st = st
	return nil
}

// checkSnapshot rejects a decoded state that Apply can never produce: the
// id counters start at 1 (an empty or foreign message leaves them at 0),
// and node rows have distinct non-zero ids below the counter and distinct
// non-empty names.
func checkSnapshot(st *pb.ClusterState) error {
	if st.NextNodeId == 0 || st.NextEventId == 0 {
		return fmt.Errorf("not a cluster state: next node id %d, next event id %d (both start at 1)", st.NextNodeId, st.NextEventId)
	}
	ids := make(map[uint32]bool, len(st.Nodes))
	names := make(map[string]bool, len(st.Nodes))
	for _, n := range st.Nodes {
		switch {
		case n.Id == 0 || n.Id >= st.NextNodeId:
			return fmt.Errorf("node %q has id %d, outside 1..%d", n.Name, n.Id, st.NextNodeId-1)
		case ids[n.Id]:
			return fmt.Errorf("two nodes with id %d", n.Id)
		case n.Name == "":
			return fmt.Errorf("node %d has no name", n.Id)
		case names[n.Name]:
			return fmt.Errorf("two nodes named %q", n.Name)
		}
		ids[n.Id], names[n.Name] = true, true
	}
	return nil
}

// Encode marshals a command for the log.
func Encode(cmd *pb.Command) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return b, nil
}

// Decode unmarshals a log entry. An entry without a command is an error.
func Decode(data []byte) (*pb.Command, error) {
	cmd := &pb.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	if cmd.Cmd == nil {
		return nil, fmt.Errorf("decode command: empty envelope (%d bytes)", len(data))
	}
	return cmd, nil
}

// Apply applies one command at a log index. Rejected commands leave the
// state as it was, apart from the applied index.
func (m *Machine) Apply(index uint64, cmd *pb.Command) Result {
	m.st.AppliedIndex = index
	// Work on a copy so that a handler that fails half-way changes nothing.
	next := proto.Clone(m.st).(*pb.ClusterState)
	a := &applier{st: next, index: index, at: cmd.GetAtUnixMs()}
	res := Result{Index: index}
	res.NodeID, res.Err = a.dispatch(cmd)
	if res.Err != nil {
		return res
	}
	a.pruneEvents()
	m.st = next
	return res
}

type applier struct {
	st    *pb.ClusterState
	index uint64
	at    int64
}

func (a *applier) dispatch(cmd *pb.Command) (uint32, error) {
	switch c := cmd.Cmd.(type) {
	case *pb.Command_InitCluster:
		return 0, a.initCluster(c.InitCluster)
	case *pb.Command_RegisterNode:
		return a.registerNode(c.RegisterNode)
	case *pb.Command_RemoveNode:
		return 0, a.removeNode(c.RemoveNode)
	case *pb.Command_SetSystemIdentifier:
		return 0, a.setSystemIdentifier(c.SetSystemIdentifier)
	case *pb.Command_RegisterPrimary:
		return 0, a.registerPrimary(c.RegisterPrimary)
	case *pb.Command_Promote:
		return 0, a.promote(c.Promote)
	case *pb.Command_RenewLease:
		return 0, a.renewLease(c.RenewLease)
	case *pb.Command_ReleaseLease:
		return 0, a.releaseLease(c.ReleaseLease)
	case *pb.Command_RecordEvent:
		return 0, a.recordEvent(c.RecordEvent)
	case *pb.Command_SetStandby:
		return 0, a.setStandby(c.SetStandby)
	case *pb.Command_SetNodeActive:
		return 0, a.setNodeActive(c.SetNodeActive)
	case *pb.Command_SetSettings:
		return 0, a.setSettings(c.SetSettings)
	case *pb.Command_BeginSwitchover:
		return 0, a.beginSwitchover(c.BeginSwitchover)
	case *pb.Command_UpdateSwitchover:
		return 0, a.updateSwitchover(c.UpdateSwitchover)
	case *pb.Command_EndSwitchover:
		return 0, a.endSwitchover(c.EndSwitchover)
	case *pb.Command_SetSyncStandbys:
		return 0, a.setSyncStandbys(c.SetSyncStandbys)
	case *pb.Command_SetSyncQuorum:
		return 0, a.setSyncQuorum(c.SetSyncQuorum)
	case *pb.Command_SetNeedsReclone:
		return 0, a.setNeedsReclone(c.SetNeedsReclone)
	case *pb.Command_SetVoter:
		return 0, a.setVoter(c.SetVoter)
	case *pb.Command_SetMaintenance:
		return 0, a.setMaintenance(c.SetMaintenance)
	case *pb.Command_SetConfig:
		return 0, a.setConfig(c.SetConfig)
	case *pb.Command_ScheduleOperation:
		return 0, a.scheduleOperation(c.ScheduleOperation)
	case *pb.Command_EndScheduledOperation:
		return 0, a.endScheduledOperation(c.EndScheduledOperation)
	default:
		return 0, errorf(CodeInvalidCommand, "unknown command %T", cmd.Cmd)
	}
}

// node returns the row with this id, or an unknown_node error.
func (a *applier) node(id uint32) (*pb.Node, error) {
	if n := NodeByID(a.st, id); n != nil {
		return n, nil
	}
	return nil, errorf(CodeUnknownNode, "no node with id %d", id)
}

func (a *applier) touch(n *pb.Node) { n.ModifiedIndex = a.index }

// checkTerm rejects a decision made in another term than the current one.
func (a *applier) checkTerm(term uint64, what string) error {
	if term != a.st.Term {
		return errorf(CodeStaleTerm, "%s names term %d, the cluster is in term %d", what, term, a.st.Term)
	}
	return nil
}

func (a *applier) event(nodeID uint32, typ string, ok bool, details string) {
	name := ""
	if n := NodeByID(a.st, nodeID); n != nil {
		name = n.Name
	}
	a.st.Events = append(a.st.Events, &pb.Event{
		Id:              a.st.NextEventId,
		NodeId:          nodeID,
		NodeName:        name,
		Type:            typ,
		Ok:              ok,
		TimestampUnixMs: a.at,
		Details:         details,
		Term:            a.st.Term,
		Index:           a.index,
	})
	a.st.NextEventId++
}

// pruneEvents caps the events table by age (relative to the command's
// timestamp) and by count, oldest first.
func (a *applier) pruneEvents() {
	ev := a.st.Events
	if maxAge := a.st.Settings.GetEventMaxAgeMs(); maxAge > 0 && a.at > 0 {
		// Timestamps come from different proposers' clocks and need not be
		// sorted, so filter rather than cut a prefix.
		cut := a.at - maxAge
		kept := make([]*pb.Event, 0, len(ev))
		for _, e := range ev {
			if e.TimestampUnixMs >= cut {
				kept = append(kept, e)
			}
		}
		ev = kept
	}
	maxCount := a.st.Settings.GetEventMaxCount()
	if maxCount <= 0 {
		maxCount = DefaultEventMaxCount
	}
	if int64(len(ev)) > maxCount {
		ev = ev[int64(len(ev))-maxCount:]
	}
	a.st.Events = ev
}
