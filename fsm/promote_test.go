package fsm

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestPromoteBuilder: the one Promote command names the next term and the
// cluster's lease duration, falling back to the caller's default only when
// the settings carry none; every other field is passed through.
func TestPromoteBuilder(t *testing.T) {
	p := Promotion{NodeID: 3, Reason: EventFailover, LeaseSerial: 9, Timeline: 2, ReceivedLSN: 1234, Details: "d"}
	cases := []struct {
		name string
		st   *pb.ClusterState
		p    Promotion
		want *pb.Promote
	}{
		{"settings lease", &pb.ClusterState{Term: 4, Settings: &pb.Settings{LeaseMs: 6000}}, p,
			&pb.Promote{NodeId: 3, Term: 5, Reason: EventFailover, LeaseSerial: 9, LeaseMs: 6000, Timeline: 2, ReceivedLsn: 1234, Details: "d"}},
		{"no lease in the settings: the default", &pb.ClusterState{Term: 4, Settings: &pb.Settings{}}, p,
			&pb.Promote{NodeId: 3, Term: 5, Reason: EventFailover, LeaseSerial: 9, LeaseMs: 4000, Timeline: 2, ReceivedLsn: 1234, Details: "d"}},
		{"no settings at all", &pb.ClusterState{}, Promotion{NodeID: 1, Reason: ReasonSwitchoverRollback, LeaseSerial: 2, Timeline: 7},
			&pb.Promote{NodeId: 1, Term: 1, Reason: ReasonSwitchoverRollback, LeaseSerial: 2, LeaseMs: 4000, Timeline: 7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Promote(tc.st, tc.p, 4*time.Second).GetPromote()
			if !proto.Equal(got, tc.want) {
				t.Fatalf("Promote = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPromoteBuilderApplies: what the builder makes is accepted by Apply
// (term and serial compare-and-set) and rejected once stale.
func TestPromoteBuilderApplies(t *testing.T) {
	m := New()
	idx := uint64(0)
	apply := func(cmd *pb.Command) error { idx++; return m.Apply(idx, cmd).Err }
	must := func(cmd *pb.Command) {
		t.Helper()
		if err := apply(cmd); err != nil {
			t.Fatalf("apply %v: %v", cmd, err)
		}
	}
	must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{LeaseMs: 4000}}}})
	for _, name := range []string{"pg1", "pg2"} {
		must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: name, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
	}
	must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	must(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 2, UpstreamId: 1, Term: 1}}})
	st := m.State()
	cmd := Promote(st, Promotion{NodeID: 2, Reason: EventFailover, LeaseSerial: st.Lease.Serial, Timeline: 1}, time.Second)
	must(cmd)
	if p := Primary(m.State()); p == nil || p.Id != 2 || m.State().Term != 2 || m.State().Lease.DurationMs != 4000 {
		t.Fatalf("after the promotion: primary %v term %d lease %v", p, m.State().Term, m.State().Lease)
	}
	if err := apply(cmd); err == nil {
		t.Fatal("the same promotion applied twice: want a stale-term rejection")
	}
}
