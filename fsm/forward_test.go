package fsm

import (
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestCheckForwarded(t *testing.T) {
	st := &pb.ClusterState{
		ClusterName: "c",
		Nodes:       []*pb.Node{{Id: 1, Name: "pg1"}, {Id: 2, Name: "pg2"}},
		Switchover:  &pb.Switchover{FromId: 1, ToId: 2},
	}
	noSwitch := &pb.ClusterState{ClusterName: "c", Nodes: st.Nodes}
	cases := []struct {
		name   string
		st     *pb.ClusterState
		caller string
		cmd    *pb.Command
		err    string
	}{
		{"own lease renewal", st, "pg1", &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1}}}, ""},
		{"someone else's lease", st, "pg2", &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1}}}, "RenewLease from \"pg2\" is about node 1: a node may only report about itself (node 2)"},
		{"release another's lease", st, "pg2", &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 1}}}, "about node 1"},
		{"own registration", st, "pg3", &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{Name: "pg3"}}}, ""},
		{"re-address another node", st, "pg2", &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{Name: "pg1", Conninfo: "host=evil"}}}, "a node may only register itself"},
		{"own event", st, "pg2", &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: 2, Type: EventFence}}}, ""},
		{"cluster event", st, "pg2", &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: 0, Type: "made_up"}}}, "about node 0"},
		{"unregistered caller", st, "pg9", &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 9}}}, `"pg9" is not a registered node`},
		{"own standby state", st, "pg2", &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 2, UpstreamId: 1}}}, ""},
		{"own system identifier", st, "pg2", &pb.Command{Cmd: &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{NodeId: 2}}}, ""},
		{"claim the primary role for another", st, "pg2", &pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1}}}, "about node 1"},
		{"primary sets its sync set", st, "pg1", &pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{PrimaryId: 1, NodeIds: []uint32{2}}}}, ""},
		{"standby sets the sync set", st, "pg2", &pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{PrimaryId: 1}}}, "about node 1"},
		{"old primary reports its shutdown LSN", st, "pg1", &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{ShutdownLsn: 5}}}, ""},
		{"target reports the shutdown LSN", st, "pg2", &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{ShutdownLsn: 5}}}, "about node 1"},
		{"no switchover running", noSwitch, "pg1", &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{}}}, "no switchover is running"},
		{"promote", st, "pg2", &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2}}}, "Promote from \"pg2\": only the Raft leader proposes it"},
		{"voter change", st, "pg2", &pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: 2, Voter: true}}}, "SetVoter from \"pg2\": only the Raft leader proposes it"},
		{"pause", st, "pg2", &pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{}}}, "SetSettings from \"pg2\": only the Raft leader"},
		// Configuration changes are the operator's, on the leader (ConfigService.Set): even the primary may not forward one.
		{"config change", st, "pg1", setConfig(0, "postgresql.parameters.work_mem", "8MB"), "SetConfig from \"pg1\": only the Raft leader proposes it"},
		{"remove", st, "pg2", &pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 1}}}, "RemoveNode"},
		{"init", st, "pg2", &pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{}}}, "InitCluster"},
		{"begin switchover", st, "pg1", &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{}}}, "BeginSwitchover"},
		{"end switchover", st, "pg1", &pb.Command{Cmd: &pb.Command_EndSwitchover{EndSwitchover: &pb.EndSwitchover{}}}, "EndSwitchover"},
		{"node active", st, "pg2", &pb.Command{Cmd: &pb.Command_SetNodeActive{SetNodeActive: &pb.SetNodeActive{NodeId: 2}}}, "SetNodeActive"},
		{"empty", st, "pg2", &pb.Command{}, "an empty command"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckForwarded(c.st, c.caller, c.cmd)
			if c.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want %q", err, c.err)
			}
		})
	}
}
