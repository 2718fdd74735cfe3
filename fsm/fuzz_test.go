package fsm

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// seedAt is the proposer clock of the first seed command.
const seedAt = 1_700_000_000_000

// seedHistory is a cluster's life in commands, every one of them accepted
// in this order: init, three data nodes and a witness, a primary with a
// synchronous standby, a switchover that is abandoned, a failover, a node
// removed. Each step builds its command from the state before it (lease
// serials). It seeds the fuzz corpora with real encoded commands and
// snapshots.
var seedHistory = []func(st *pb.ClusterState) *pb.Command{
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{EventMaxCount: 100}}}}
	},
	seedRegister("pg1", pb.NodeKind_NODE_KIND_DATA, "host=10.0.0.1 port=5432 user=replicator application_name=pg1"),
	seedRegister("pg2", pb.NodeKind_NODE_KIND_DATA, "host=10.0.0.2 port=5432 user=replicator application_name=pg2"),
	seedRegister("pg3", pb.NodeKind_NODE_KIND_DATA, "host=pg3.example port=5433 user=replicator application_name=pg3"),
	seedRegister("w1", pb.NodeKind_NODE_KIND_WITNESS, ""),
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{SystemIdentifier: 7301234567890123456, NodeId: 1}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 2, UpstreamId: 1, Term: 1, EventType: EventStandbyRegister, SlotName: "hasidecar_pg2"}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: 3, UpstreamId: 1, Term: 1}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, FlushLsn: 0x3000060, DurationMs: 4000, Timeline: 1}}}
	},
	func(*pb.ClusterState) *pb.Command {
		on, n := true, int64(50)
		return &pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Synchronous: &on, EventMaxCount: &n}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: 1, PrimaryId: 1, NodeIds: []uint32{2}}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: 3, Type: EventStandbyFollow, Ok: true, Details: "following pg1", Term: 1}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_SetNodeActive{SetNodeActive: &pb.SetNodeActive{NodeId: 3, Active: false, Term: 1, Details: "unreachable"}}}
	},
	func(st *pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 2, Term: st.Term, DeadlineUnixMs: seedAt + 60_000}}}
	},
	func(st *pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: st.Term, ShutdownLsn: 0x3000100}}}
	},
	func(st *pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_EndSwitchover{EndSwitchover: &pb.EndSwitchover{Term: st.Term, Ok: false, Details: "abandoned"}}}
	},
	func(st *pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 1, Term: st.Term, Reason: "the primary's sidecar is shutting down"}}}
	},
	func(st *pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_Promote{Promote: &pb.Promote{NodeId: 2, Term: st.Term + 1, Reason: "failover",
			LeaseSerial: st.GetLease().GetSerial(), LeaseMs: 4000, Timeline: 2, Details: "pg1 unreachable"}}}
	},
	func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 3}}}
	},
}

func seedRegister(name string, kind pb.NodeKind, conninfo string) func(*pb.ClusterState) *pb.Command {
	return func(*pb.ClusterState) *pb.Command {
		return &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{
			ClusterName: "c1", Name: name, Kind: kind, Priority: 100, Conninfo: conninfo, Tags: []string{"dc1"},
			RaftAddress: name + ":7000", GrpcAddress: name + ":7001", HttpAddress: name + ":8008", Voter: true,
		}}}
	}
}

// seedRun applies seedHistory to a new machine and returns the encoded
// commands and the snapshot taken after each of them.
func seedRun(tb testing.TB) (cmds, snaps [][]byte) {
	tb.Helper()
	m := New()
	for i, step := range seedHistory {
		cmd := step(m.State())
		cmd.AtUnixMs = seedAt + int64(i)*1000
		b, err := Encode(cmd)
		if err != nil {
			tb.Fatal(err)
		}
		if r := m.Apply(uint64(i+1), cmd); r.Err != nil {
			tb.Fatalf("seed command %d (%T) rejected: %v", i, cmd.Cmd, r.Err)
		}
		snap, err := m.Snapshot()
		if err != nil {
			tb.Fatal(err)
		}
		cmds, snaps = append(cmds, b), append(snaps, snap)
	}
	return cmds, snaps
}

// fuzzGarbage is what a corrupt or foreign log entry or snapshot looks
// like: nothing, invalid wire types, truncated fields, a bare varint, a
// length prefix running past the end.
var fuzzGarbage = [][]byte{nil, {0xff, 0xff, 0xff}, {0x08, 0x01}, {0x52, 0x05, 0x0a}, {0x0a, 0x80}, []byte("hello, raft")}

// FuzzDecode feeds arbitrary log entries to Decode and applies what decodes
// to machines at several points of a cluster's life: Decode never panics, a
// decoded command re-encodes to one that decodes equal, Apply never panics,
// a rejected command changes nothing but the applied index, and the state
// invariants hold whatever the command.
func FuzzDecode(f *testing.F) {
	cmds, snaps := seedRun(f)
	for _, c := range cmds {
		f.Add(c)
	}
	for _, g := range fuzzGarbage {
		f.Add(g)
	}
	// Bases: the cluster just initialised, a primary with standbys, the end.
	bases := [][]byte{snaps[0], snaps[9], snaps[len(snaps)-1]}

	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			if cmd != nil {
				t.Fatalf("Decode returned a command with the error %v", err)
			}
			return
		}
		enc, err := Encode(cmd)
		if err != nil {
			t.Fatalf("Encode(Decode(%x)): %v", data, err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%x))): %v", data, err)
		}
		if !proto.Equal(cmd, back) {
			t.Fatalf("re-encoding changed the command:\n got %v\nwant %v", back, cmd)
		}
		for _, base := range bases {
			m := New()
			if err := m.Restore(base); err != nil {
				t.Fatal(err)
			}
			prev := m.State()
			idx := prev.AppliedIndex + 1
			res := m.Apply(idx, proto.Clone(cmd).(*pb.Command))
			st := m.State()
			if res.Err != nil {
				var fe *Error
				if !errors.As(res.Err, &fe) {
					t.Fatalf("untyped error %v", res.Err)
				}
				want := proto.Clone(prev).(*pb.ClusterState)
				want.AppliedIndex = idx
				if !proto.Equal(want, st) {
					t.Fatalf("rejected command %v changed the state", cmd)
				}
			}
			checkInvariants(t, prev, st)
		}
	})
}

// FuzzRestore feeds arbitrary snapshots to Restore on a machine holding a
// cluster. raft's FSM contract has Restore discard the previous state; a
// snapshot that does not decode or is not a cluster state must instead be
// refused whole, so that no half-restored state is ever applied to: an error
// leaves the machine byte-for-byte as it was. A snapshot that restores
// snapshots again to one that restores equal, and commands apply to it
// without panicking.
func FuzzRestore(f *testing.F) {
	cmds, snaps := seedRun(f)
	for _, s := range snaps {
		f.Add(s)
	}
	for _, g := range fuzzGarbage {
		f.Add(g)
	}
	f.Add(snaps[len(snaps)-1][:len(snaps[len(snaps)-1])/2]) // truncated
	final := snaps[len(snaps)-1]

	f.Fuzz(func(t *testing.T, data []byte) {
		m := New()
		if err := m.Restore(final); err != nil {
			t.Fatal(err)
		}
		if err := m.Restore(data); err != nil {
			after, serr := m.Snapshot()
			if serr != nil {
				t.Fatal(serr)
			}
			if !bytes.Equal(after, final) {
				t.Fatalf("a failed restore (%v) changed the state", err)
			}
			return
		}
		st := m.State()
		if st.Lease == nil || st.Settings == nil {
			t.Fatalf("restored state without lease or settings: %v", st)
		}
		snap, err := m.Snapshot()
		if err != nil {
			t.Fatalf("Snapshot of a restored state: %v", err)
		}
		again := New()
		if err := again.Restore(snap); err != nil {
			t.Fatalf("Restore(Snapshot(Restore(%x))): %v", data, err)
		}
		if !proto.Equal(st, again.State()) {
			t.Fatalf("snapshot round trip changed the restored state")
		}
		idx := st.AppliedIndex
		for _, c := range cmds {
			cmd, err := Decode(c)
			if err != nil {
				t.Fatal(err)
			}
			idx++
			prev := m.State()
			if res := m.Apply(idx, cmd); res.Err != nil {
				prev.AppliedIndex = idx
				if !proto.Equal(prev, m.State()) {
					t.Fatalf("rejected command %v changed the restored state", cmd)
				}
			}
		}
	})
}

// TestRestoreRejectsGarbage: bytes that are not a snapshot of this machine
// (including ones that happen to be valid protobuf) are refused, and the
// state stays byte-for-byte what it was.
func TestRestoreRejectsGarbage(t *testing.T) {
	_, snaps := seedRun(t)
	final := snaps[len(snaps)-1]
	dup := &pb.ClusterState{NextNodeId: 3, NextEventId: 1, Nodes: []*pb.Node{{Id: 1, Name: "pg1"}, {Id: 1, Name: "pg2"}}}
	dupName := &pb.ClusterState{NextNodeId: 3, NextEventId: 1, Nodes: []*pb.Node{{Id: 1, Name: "pg1"}, {Id: 2, Name: "pg1"}}}
	highID := &pb.ClusterState{NextNodeId: 2, NextEventId: 1, Nodes: []*pb.Node{{Id: 2, Name: "pg1"}}}
	noName := &pb.ClusterState{NextNodeId: 2, NextEventId: 1, Nodes: []*pb.Node{{Id: 1}}}
	cases := map[string][]byte{
		"empty":                nil,
		"invalid wire type":    {0xff, 0xff, 0xff},
		"unknown field only":   {0x08, 0x01},
		"text":                 []byte("hello, raft"),
		"truncated snapshot":   final[:len(final)/2],
		"a command, not state": mustMarshal(t, &pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 3}}}),
		"duplicate node id":    mustMarshal(t, dup),
		"duplicate node name":  mustMarshal(t, dupName),
		"id above the counter": mustMarshal(t, highID),
		"node without name":    mustMarshal(t, noName),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			m := New()
			if err := m.Restore(final); err != nil {
				t.Fatal(err)
			}
			if err := m.Restore(data); err == nil {
				t.Fatalf("Restore(%x) accepted: %v", data, m.State())
			}
			after, err := m.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, final) {
				t.Errorf("the failed restore changed the state")
			}
		})
	}
	// Every snapshot of the seed history restores.
	for i, s := range snaps {
		if err := New().Restore(s); err != nil {
			t.Errorf("seed snapshot %d: %v", i, err)
		}
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
