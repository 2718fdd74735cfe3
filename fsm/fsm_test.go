package fsm

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// harness applies commands at increasing indexes and fails the test on an
// unexpected result.
type harness struct {
	t     *testing.T
	m     *Machine
	index uint64
	at    int64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, m: New(), at: 1_700_000_000_000}
	h.ok(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{EventMaxCount: 100}}}})
	return h
}

func (h *harness) apply(cmd *pb.Command) Result {
	h.index++
	h.at += 1000
	if cmd.AtUnixMs == 0 {
		cmd.AtUnixMs = h.at
	}
	// Every command goes through the log encoding, as in production.
	b, err := Encode(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	dec, err := Decode(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.m.Apply(h.index, dec)
}

func (h *harness) ok(cmd *pb.Command) Result {
	h.t.Helper()
	r := h.apply(cmd)
	if r.Err != nil {
		h.t.Fatalf("apply %v: unexpected error %v", cmd, r.Err)
	}
	return r
}

func register(name string, kind pb.NodeKind) *pb.Command {
	return &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{
		ClusterName: "c1", Name: name, Kind: kind, Priority: 100,
		RaftAddress: name + ":1", GrpcAddress: name + ":2", Voter: true,
	}}}
}

// threeNodes: pg1 primary (term 1), pg2 and pg3 standbys, w1 witness.
func threeNodes(t *testing.T) *harness {
	h := newHarness(t)
	for _, n := range []string{"pg1", "pg2", "pg3"} {
		h.ok(register(n, pb.NodeKind_NODE_KIND_DATA))
	}
	h.ok(register("w1", pb.NodeKind_NODE_KIND_WITNESS))
	h.ok(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	for _, id := range []uint32{2, 3} {
		h.ok(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: id, UpstreamId: 1, Term: 1}}})
	}
	return h
}

func TestBootstrapShape(t *testing.T) {
	h := threeNodes(t)
	st := h.m.State()
	if st.Term != 1 {
		t.Fatalf("term = %d, want 1", st.Term)
	}
	if p := Primary(st); p == nil || p.Name != "pg1" {
		t.Fatalf("primary = %v, want pg1", p)
	}
	for _, name := range []string{"pg2", "pg3"} {
		n := NodeByName(st, name)
		if n.Role != pb.NodeRole_NODE_ROLE_STANDBY || n.UpstreamId != 1 || !n.Active {
			t.Errorf("%s = %v, want active standby of 1", name, n)
		}
		if n.SlotName != "hasidecar_"+name {
			t.Errorf("%s slot = %q", name, n.SlotName)
		}
	}
	if w := NodeByName(st, "w1"); w.Role != pb.NodeRole_NODE_ROLE_WITNESS {
		t.Errorf("w1 role = %v", w.Role)
	}
	if st.Lease.HolderId != 1 || st.Lease.Term != 1 {
		t.Errorf("lease = %v", st.Lease)
	}
	var types []string
	for _, e := range st.Events {
		types = append(types, e.Type)
	}
	want := []string{"node_register", "node_register", "node_register", "witness_register", "primary_register", "standby_register", "standby_register"}
	if len(types) != len(want) {
		t.Fatalf("events = %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events = %v, want %v", types, want)
		}
	}
}

func TestRejections(t *testing.T) {
	lease := func(h *harness) uint64 { return h.m.State().Lease.Serial }
	cases := []struct {
		name string
		cmd  func(h *harness) *pb.Command
		code Code
	}{
		{"promote with the current term", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 1, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeStaleTerm},
		{"promote skipping a term", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 3, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeStaleTerm},
		{"promote on an old lease serial", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: "failover", LeaseSerial: lease(h) - 1, LeaseMs: 4000}}}
		}, CodeStaleTerm},
		{"voter change of an unknown node", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: 42, Voter: true}}}
		}, CodeUnknownNode},
		{"promote an unknown node", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 42, Term: 2, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeUnknownNode},
		{"promote the witness", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 4, Term: 2, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeInvalidTransition},
		{"promote the primary", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 1, Term: 2, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeInvalidTransition},
		{"promote with an unknown reason", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: "whim", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeInvalidCommand},
		{"renew by a standby", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 2, Term: 1, DurationMs: 4000}}}
		}, CodeInvalidTransition},
		{"renew in a stale term", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 0, DurationMs: 4000}}}
		}, CodeStaleTerm},
		{"release by a standby", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 3, Term: 1}}}
		}, CodeInvalidTransition},
		{"second bootstrap primary", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 2, LeaseMs: 4000}}}
		}, CodeInvalidTransition},
		{"register under another cluster's name", func(h *harness) *pb.Command {
			c := register("pg9", pb.NodeKind_NODE_KIND_DATA)
			c.GetRegisterNode().ClusterName = "other"
			return c
		}, CodeClusterMismatch},
		{"re-register a data node as witness", func(h *harness) *pb.Command {
			return register("pg2", pb.NodeKind_NODE_KIND_WITNESS)
		}, CodeInvalidTransition},
		{"register with another node's raft address", func(h *harness) *pb.Command {
			c := register("pg9", pb.NodeKind_NODE_KIND_DATA)
			c.GetRegisterNode().RaftAddress = "pg1:1"
			return c
		}, CodeConflict},
		{"standby of a non-primary", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 3, UpstreamId: 2, Term: 1}}}
		}, CodeInvalidTransition},
		{"primary made standby", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 1, UpstreamId: 1, Term: 1}}}
		}, CodeInvalidTransition},
		{"standby registration in a stale term", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 3, UpstreamId: 1, Term: 0}}}
		}, CodeStaleTerm},
		{"remove the primary", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 1}}}
		}, CodeInvalidTransition},
		{"remove an unknown node", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 99}}}
		}, CodeUnknownNode},
		{"other system identifier", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{SystemIdentifier: 2}}}
		}, CodeClusterMismatch},
		{"event in a stale term", func(h *harness) *pb.Command {
			h.ok(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}})
			return &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: 1, Type: "fence", Term: 1}}}
		}, CodeStaleTerm},
		{"switchover to the witness", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 4, Term: 1}}}
		}, CodeInvalidTransition},
		{"switchover from a standby", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 2, ToId: 3, Term: 1}}}
		}, CodeInvalidTransition},
		{"second switchover in flight", func(h *harness) *pb.Command {
			h.ok(&pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 2, Term: 1}}})
			return &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 3, Term: 1}}}
		}, CodeConflict},
		{"a second, different shutdown checkpoint", func(h *harness) *pb.Command {
			h.ok(&pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 2, Term: 1}}})
			h.ok(&pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: 1, ShutdownLsn: 0x3000100}}})
			h.ok(&pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: 1, ShutdownLsn: 0x3000100}}}) // the same again: fine
			return &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: 1, ShutdownLsn: 0x3000200}}}
		}, CodeConflict},
		{"failover during a switchover", func(h *harness) *pb.Command {
			h.ok(&pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 2, Term: 1}}})
			return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 3, Term: 2, Reason: "failover", LeaseSerial: lease(h), LeaseMs: 4000}}}
		}, CodeConflict},
		{"empty cluster re-init", func(h *harness) *pb.Command {
			return &pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c2"}}}
		}, CodeClusterMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := threeNodes(t)
			h.ok(&pb.Command{Cmd: &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{SystemIdentifier: 1}}})
			cmd := tc.cmd(h)
			before := h.m.State()
			r := h.apply(cmd)
			if r.Err == nil {
				t.Fatalf("command accepted, want %s", tc.code)
			}
			var fe *Error
			if !errors.As(r.Err, &fe) || fe.Code != tc.code {
				t.Fatalf("error = %v, want code %s", r.Err, tc.code)
			}
			after := h.m.State()
			after.AppliedIndex = before.AppliedIndex
			if !proto.Equal(before, after) {
				t.Fatalf("a rejected command changed the state")
			}
			if back, ok := ParseError(r.Err.Error()); !ok || back.Code != tc.code {
				t.Fatalf("ParseError(%q) = %v, %v", r.Err.Error(), back, ok)
			}
		})
	}
}

// TestSetVoter: the row's voter flag follows, with one event per change.
func TestSetVoter(t *testing.T) {
	h := threeNodes(t)
	h.ok(&pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: 3, Voter: false, Details: "silent for 31s"}}})
	h.ok(&pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: 2, Voter: true}}})
	st := h.m.State()
	if NodeByID(st, 3).Voter || !NodeByID(st, 2).Voter {
		t.Fatalf("voter flags: pg2 %v, pg3 %v", NodeByID(st, 2).Voter, NodeByID(st, 3).Voter)
	}
	evs := st.Events[len(st.Events)-2:]
	if evs[0].Type != EventVoterDemoted || evs[0].NodeName != "pg3" || evs[0].Details != `"pg3" is a non-voter: silent for 31s` {
		t.Fatalf("first event %v", evs[0])
	}
	if evs[1].Type != EventVoterAdded || evs[1].NodeName != "pg2" || evs[1].Details != `"pg2" is a voter` {
		t.Fatalf("second event %v", evs[1])
	}
}

func TestPromoteMovesEveryone(t *testing.T) {
	h := threeNodes(t)
	serial := h.m.State().Lease.Serial
	h.ok(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: "failover", LeaseSerial: serial, LeaseMs: 4000}}})
	st := h.m.State()
	pg1, pg2, pg3 := NodeByID(st, 1), NodeByID(st, 2), NodeByID(st, 3)
	if st.Term != 2 || pg2.Role != pb.NodeRole_NODE_ROLE_PRIMARY || pg2.UpstreamId != 0 {
		t.Fatalf("after promote: term %d, pg2 %v", st.Term, pg2)
	}
	if pg1.Role != pb.NodeRole_NODE_ROLE_STANDBY || pg1.UpstreamId != 2 || pg1.Active {
		t.Fatalf("old primary %v: want inactive standby of pg2", pg1)
	}
	if pg3.UpstreamId != 2 {
		t.Fatalf("pg3 upstream %d, want 2", pg3.UpstreamId)
	}
	if st.Lease.HolderId != 2 || st.Lease.Term != 2 || st.Lease.Serial != serial+1 {
		t.Fatalf("lease %v", st.Lease)
	}
	// The old primary's renewal in the old term is refused.
	r := h.apply(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, DurationMs: 4000}}})
	if !errors.Is(r.Err, ErrStaleTerm) {
		t.Fatalf("old primary renewal: %v, want stale term", r.Err)
	}
	// It rejoins as a standby of the new primary.
	h.ok(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 1, UpstreamId: 2, Term: 2, EventType: EventNodeRejoin}}})
	if n := NodeByID(h.m.State(), 1); !n.Active {
		t.Fatalf("rejoined node inactive")
	}
}

func TestRenewalMakesPromotionStale(t *testing.T) {
	h := threeNodes(t)
	seen := h.m.State().Lease.Serial // the leader decides on this serial
	h.ok(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, FlushLsn: 99, DurationMs: 4000}}})
	r := h.apply(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: 2, Reason: "failover", LeaseSerial: seen, LeaseMs: 4000}}})
	if !errors.Is(r.Err, ErrStaleTerm) {
		t.Fatalf("promotion after a renewal: %v, want stale", r.Err)
	}
	if st := h.m.State(); st.Lease.FlushLsn != 99 || st.Term != 1 {
		t.Fatalf("state %v", st.Lease)
	}
}

func TestSyncStandbys(t *testing.T) {
	h := threeNodes(t)
	h.ok(&pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: []uint32{3, 2, 3}}}})
	if got := h.m.State().SyncStandbys; len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("sync set %v, want [2 3]", got)
	}
	for _, tc := range []struct {
		name string
		cmd  *pb.SetSyncStandbys
		code Code
	}{
		{"not from the primary", &pb.SetSyncStandbys{Term: 1, PrimaryId: 2, NodeIds: []uint32{3}}, CodeInvalidTransition},
		{"stale term", &pb.SetSyncStandbys{Term: 0, PrimaryId: 1, NodeIds: []uint32{3}}, CodeStaleTerm},
		{"the witness", &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: []uint32{4}}, CodeInvalidTransition},
		{"the primary itself", &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: []uint32{1}}, CodeInvalidTransition},
		{"unknown node", &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: []uint32{9}}, CodeUnknownNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := h.apply(&pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: tc.cmd}}); !errors.Is(r.Err, &Error{Code: tc.code}) {
				t.Fatalf("error %v, want %s", r.Err, tc.code)
			}
		})
	}
	// A member of the set cannot be removed.
	if r := h.apply(&pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 2}}}); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("removing a synchronous standby: %v", r.Err)
	}
}

// TestPromoteKeepsSyncStandbys: a promotion keeps the other members of the
// committed synchronous set (never the new primary) and records the new
// primary's received LSN as the floor of the next failover; a refused
// promotion changes neither.
func TestPromoteKeepsSyncStandbys(t *testing.T) {
	cases := []struct {
		name      string
		set       []uint32
		promote   uint32
		reason    string
		switchTo  uint32 // BeginSwitchover to this node first
		wantSet   []uint32
		wantFloor uint64
	}{
		{"failover keeps the other member", []uint32{2, 3}, 2, EventFailover, 0, []uint32{3}, 777},
		{"failover of the only member empties it", []uint32{2}, 2, EventFailover, 0, nil, 777},
		{"failover to a non-member keeps all", []uint32{3}, 2, "manual", 0, []uint32{3}, 777},
		{"switchover keeps the other member", []uint32{2, 3}, 3, EventSwitchover, 3, []uint32{2}, 777},
		{"empty set stays empty", nil, 3, EventFailover, 0, nil, 777},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := threeNodes(t)
			if len(tc.set) > 0 {
				h.ok(&pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: tc.set}}})
			}
			if tc.switchTo != 0 {
				h.ok(&pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: tc.switchTo, Term: 1}}})
			}
			stale := &pb.Promote{NodeId: tc.promote, Term: 2, Reason: tc.reason, LeaseSerial: h.m.State().Lease.Serial - 1, LeaseMs: 4000, ReceivedLsn: 1}
			if r := h.apply(&pb.Command{Cmd: &pb.Command_Promote{Promote: stale}}); !errors.Is(r.Err, ErrStaleTerm) {
				t.Fatalf("promotion on a stale lease serial: %v", r.Err)
			}
			if st := h.m.State(); !slices.Equal(st.SyncStandbys, tc.set) || st.SyncFloorLsn != 0 {
				t.Fatalf("a refused promotion changed the set to %v, floor %d", st.SyncStandbys, st.SyncFloorLsn)
			}
			h.ok(&pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: tc.promote, Term: 2, Reason: tc.reason,
				LeaseSerial: h.m.State().Lease.Serial, LeaseMs: 4000, ReceivedLsn: 777}}})
			st := h.m.State()
			if !slices.Equal(st.SyncStandbys, tc.wantSet) {
				t.Fatalf("sync set after the promotion of %d: %v, want %v", tc.promote, st.SyncStandbys, tc.wantSet)
			}
			if st.SyncFloorLsn != tc.wantFloor {
				t.Fatalf("floor %d, want %d", st.SyncFloorLsn, tc.wantFloor)
			}
			if slices.Contains(st.SyncStandbys, Primary(st).Id) {
				t.Fatalf("the new primary %d is in the set %v", Primary(st).Id, st.SyncStandbys)
			}
		})
	}
}

func TestReleaseAndReacquire(t *testing.T) {
	h := threeNodes(t)
	h.ok(&pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 1, Term: 1, Reason: "postgres crashed"}}})
	if l := h.m.State().Lease; !l.Released || l.ReleaseReason != "postgres crashed" {
		t.Fatalf("lease %v", l)
	}
	h.ok(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, DurationMs: 4000}}})
	if l := h.m.State().Lease; l.Released {
		t.Fatalf("renewal did not take the lease back: %v", l)
	}
}

func TestEventRetention(t *testing.T) {
	cases := []struct {
		name     string
		maxCount int64
		maxAgeMs int64
		events   int
		wantMax  int
	}{
		{"count cap", 10, 0, 50, 10},
		{"age cap", 1000, 5_000, 50, 6}, // one command a second: the last 5 s plus the boundary
		{"both", 3, 5_000, 50, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(&pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{EventMaxCount: &tc.maxCount, EventMaxAgeMs: &tc.maxAgeMs}}})
			for i := 0; i < tc.events; i++ {
				h.ok(&pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{Type: "test"}}})
			}
			st := h.m.State()
			if len(st.Events) > tc.wantMax {
				t.Fatalf("%d events kept, want at most %d", len(st.Events), tc.wantMax)
			}
			if len(st.Events) == 0 {
				t.Fatalf("every event pruned")
			}
			last := st.Events[len(st.Events)-1]
			if last.Id != st.NextEventId-1 {
				t.Fatalf("newest event %d pruned (next id %d)", last.Id, st.NextEventId)
			}
			for _, e := range st.Events {
				if tc.maxAgeMs > 0 && e.TimestampUnixMs < h.at-tc.maxAgeMs {
					t.Fatalf("event %d older than the age cap kept", e.Id)
				}
			}
		})
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {0xff, 0xff, 0xff}, {0x08, 0x01}} {
		if _, err := Decode(b); err == nil {
			t.Errorf("Decode(%x) accepted", b)
		}
	}
}
