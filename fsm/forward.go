package fsm

import (
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// CheckForwarded decides whether the Raft leader may commit cmd on behalf of
// the member named caller (the node name in the certificate of the sidecar
// that forwarded it over PeerService.Apply). Followers forward only what a
// sidecar says about itself — its registration, its standby state, its
// lease, its events, its part of a switchover, its synchronous set as the
// primary — so that is all a forwarded command may be. Decisions (Promote,
// switchovers, settings, membership) are proposed by the leader itself and
// never arrive this way. st is the leader's current state.
func CheckForwarded(st *pb.ClusterState, caller string, cmd *pb.Command) error {
	me := NodeByName(st, caller)
	self := func(what string, id uint32) error {
		if me == nil {
			return errorf(CodeInvalidCommand, "%s from %q: %q is not a registered node", what, caller, caller)
		}
		if id != me.Id {
			return errorf(CodeInvalidCommand, "%s from %q is about node %d: a node may only report about itself (node %d)", what, caller, id, me.Id)
		}
		return nil
	}
	switch c := cmd.Cmd.(type) {
	case *pb.Command_RegisterNode:
		if c.RegisterNode.Name != caller {
			return errorf(CodeInvalidCommand, "RegisterNode from %q names %q: a node may only register itself", caller, c.RegisterNode.Name)
		}
		return nil
	case *pb.Command_SetStandby:
		return self("SetStandby", c.SetStandby.NodeId)
	case *pb.Command_RegisterPrimary:
		return self("RegisterPrimary", c.RegisterPrimary.NodeId)
	case *pb.Command_SetSystemIdentifier:
		return self("SetSystemIdentifier", c.SetSystemIdentifier.NodeId)
	case *pb.Command_RenewLease:
		return self("RenewLease", c.RenewLease.NodeId)
	case *pb.Command_ReleaseLease:
		return self("ReleaseLease", c.ReleaseLease.NodeId)
	case *pb.Command_RecordEvent:
		return self("RecordEvent", c.RecordEvent.NodeId)
	case *pb.Command_SetSyncStandbys:
		return self("SetSyncStandbys", c.SetSyncStandbys.PrimaryId)
	case *pb.Command_SetSyncQuorum:
		return self("SetSyncQuorum", c.SetSyncQuorum.PrimaryId)
	case *pb.Command_SetNeedsReclone:
		// The primary marks another node; a node clears its own mark.
		if c.SetNeedsReclone.NeedsReclone {
			return self("SetNeedsReclone", c.SetNeedsReclone.PrimaryId)
		}
		return self("SetNeedsReclone", c.SetNeedsReclone.NodeId)
	case *pb.Command_UpdateSwitchover:
		if st.Switchover == nil {
			return errorf(CodeInvalidCommand, "UpdateSwitchover from %q: no switchover is running", caller)
		}
		return self("UpdateSwitchover", st.Switchover.FromId)
	case nil:
		return errorf(CodeInvalidCommand, "an empty command from %q", caller)
	}
	return errorf(CodeInvalidCommand, "%s from %q: only the Raft leader proposes it, it cannot be forwarded", commandName(cmd), caller)
}

// commandName is the command's type as users know it ("Promote").
func commandName(cmd *pb.Command) string {
	if cmd.Cmd == nil {
		return "an empty command"
	}
	return string(cmd.ProtoReflect().WhichOneof(cmd.ProtoReflect().Descriptor().Oneofs().ByName("cmd")).Message().Name())
}
