package fsm

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

var names = []string{"pg1", "pg2", "pg3", "pg4", "w1", "w2"}

// genCommand draws a command that is often valid and often not: node ids and
// terms are drawn near the current state so that every handler's accept and
// reject paths are reached.
func genCommand(t *rapid.T, st *pb.ClusterState, at int64) *pb.Command {
	// Mostly valid ids, terms and serials, sometimes not.
	id := rapid.Uint32Range(0, uint32(len(names))+1).Draw(t, "node")
	if len(st.Nodes) > 0 && rapid.IntRange(0, 4).Draw(t, "existing") > 0 {
		id = rapid.SampledFrom(st.Nodes).Draw(t, "existingNode").Id
	}
	term := st.Term
	if rapid.IntRange(0, 3).Draw(t, "offTerm") == 0 {
		term = st.Term + uint64(rapid.IntRange(0, 2).Draw(t, "dterm"))
		if term > 0 && rapid.Bool().Draw(t, "older") {
			term--
		}
	}
	serial := st.Lease.GetSerial()
	if serial > 0 && rapid.IntRange(0, 4).Draw(t, "staleSerial") == 0 {
		serial--
	}
	cmd := &pb.Command{AtUnixMs: at}
	switch rapid.IntRange(0, 16).Draw(t, "kind") {
	case 0:
		name := rapid.SampledFrom(names).Draw(t, "name")
		kind := pb.NodeKind_NODE_KIND_DATA
		if name[0] == 'w' {
			kind = pb.NodeKind_NODE_KIND_WITNESS
		}
		cluster := "c1"
		if rapid.IntRange(0, 9).Draw(t, "wrongCluster") == 0 {
			cluster = "c2"
		}
		cmd.Cmd = &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{
			ClusterName: cluster, Name: name, Kind: kind,
			Priority:    int32(rapid.IntRange(0, 100).Draw(t, "prio")),
			RaftAddress: name + ":1", GrpcAddress: name + ":2", Voter: true,
		}}
	case 1:
		cmd.Cmd = &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: id}}
	case 2:
		cmd.Cmd = &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{SystemIdentifier: rapid.Uint64Range(0, 2).Draw(t, "sysid")}}
	case 3:
		cmd.Cmd = &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: id, LeaseMs: 4000}}
	case 4:
		cmd.Cmd = &pb.Command_Promote{Promote: &pb.Promote{NodeId: id, Term: term + 1, LeaseSerial: serial, LeaseMs: 4000,
			ReceivedLsn: uint64(at),
			Reason:      rapid.SampledFrom([]string{"failover", "switchover", "manual", "bogus"}).Draw(t, "reason")}}
	case 5, 6:
		cmd.Cmd = &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: id, Term: term, DurationMs: 4000, FlushLsn: uint64(at)}}
	case 7:
		cmd.Cmd = &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: id, Term: term, Reason: "test"}}
	case 8:
		cmd.Cmd = &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: id, Type: "fence", Term: term}}
	case 9:
		up := uint32(0)
		if p := Primary(st); p != nil {
			up = p.Id
		}
		if rapid.Bool().Draw(t, "wrongUpstream") {
			up = rapid.Uint32Range(0, 6).Draw(t, "up")
		}
		cmd.Cmd = &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: id, UpstreamId: up, Term: term,
			EventType: rapid.SampledFrom([]string{"", EventStandbyFollow, EventNodeRejoin}).Draw(t, "ev")}}
	case 10:
		paused := rapid.Bool().Draw(t, "paused")
		n := int64(rapid.IntRange(0, 20).Draw(t, "maxCount"))
		age := int64(rapid.IntRange(0, 30_000).Draw(t, "maxAge"))
		cmd.Cmd = &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Paused: &paused, EventMaxCount: &n, EventMaxAgeMs: &age}}
	case 11:
		to := id
		from := uint32(0)
		if p := Primary(st); p != nil {
			from = p.Id
		}
		cmd.Cmd = &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: from, ToId: to, Term: term}}
	case 12:
		cmd.Cmd = &pb.Command_EndSwitchover{EndSwitchover: &pb.EndSwitchover{Term: term, Ok: rapid.Bool().Draw(t, "ok")}}
	case 14:
		primary := uint32(0)
		if p := Primary(st); p != nil {
			primary = p.Id
		}
		var ids []uint32
		for _, n := range st.Nodes {
			if rapid.Bool().Draw(t, "inSync") {
				ids = append(ids, n.Id)
			}
		}
		cmd.Cmd = &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: term, PrimaryId: primary, NodeIds: ids}}
	case 15:
		cmd.Cmd = &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: id, Voter: rapid.Bool().Draw(t, "voter")}}
	case 16:
		// Often at the current version, sometimes stale; keys good and bad.
		version := st.GetSettings().GetConfigVersion()
		if rapid.IntRange(0, 3).Draw(t, "staleConfig") == 0 {
			version = rapid.Uint64Range(0, version+1).Draw(t, "configVersion")
		}
		c := &pb.SetConfig{Version: version}
		for i := rapid.IntRange(0, 3).Draw(t, "changes"); i > 0; i-- {
			kv := rapid.SampledFrom([][2]string{
				{"postgresql.parameters.work_mem", "8MB"}, {"postgresql.parameters.work_mem", "16MB"},
				{"postgresql.parameters.primary_conninfo", "x"}, {"timing.lease", "2s"}, {"timing.lease", "0s"},
				{"events.max_count", "10"}, {"events.max_count", "50"}, {"synchronous", "on"}, {"bogus", "1"},
				{"postgresql.hba", `["local all all peer"]`},
			}).Draw(t, "change")
			c.Changes = append(c.Changes, &pb.ConfigChange{Key: kv[0], Value: kv[1], Unset: rapid.IntRange(0, 5).Draw(t, "unset") == 0})
		}
		cmd.Cmd = &pb.Command_SetConfig{SetConfig: c}
	case 13:
		cmd.Cmd = &pb.Command_SetNodeActive{SetNodeActive: &pb.SetNodeActive{NodeId: id, Term: term, Active: rapid.Bool().Draw(t, "active")}}
	}
	return cmd
}

func initCmd(at int64) *pb.Command {
	return &pb.Command{AtUnixMs: at, Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{EventMaxCount: 50}}}}
}

// fataler is what checkInvariants needs of *rapid.T and *testing.T.
type fataler interface {
	Fatalf(format string, args ...any)
}

// checkInvariants holds after every command, accepted or not.
func checkInvariants(t fataler, prev, st *pb.ClusterState) {
	primaries := 0
	for _, n := range st.Nodes {
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			primaries++
			if st.Lease.HolderId != n.Id || st.Lease.Term != st.Term {
				t.Fatalf("primary %q does not hold the lease of term %d: %v", n.Name, st.Term, st.Lease)
			}
			if n.Kind != pb.NodeKind_NODE_KIND_DATA {
				t.Fatalf("witness %q is primary", n.Name)
			}
		}
	}
	if primaries > 1 {
		t.Fatalf("%d primaries", primaries)
	}
	for _, id := range st.SyncStandbys {
		n := NodeByID(st, id)
		if n == nil || n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			t.Fatalf("synchronous set member %d is not a data standby: %v", id, n)
		}
	}
	if st.Term != prev.Term {
		// A promotion keeps the other members of the set (minus the new
		// primary); a switchover rollback keeps the set as it was.
		want := slices.DeleteFunc(slices.Clone(prev.SyncStandbys), func(id uint32) bool { return id == st.Lease.HolderId })
		if !slices.Equal(st.SyncStandbys, want) {
			t.Fatalf("promotion of %d in term %d: synchronous set %v, want %v (was %v)", st.Lease.HolderId, st.Term, st.SyncStandbys, want, prev.SyncStandbys)
		}
	} else if st.SyncFloorLsn != prev.SyncFloorLsn {
		t.Fatalf("the synchronous floor moved from %d to %d without a promotion", prev.SyncFloorLsn, st.SyncFloorLsn)
	}
	if st.Term < prev.Term || st.Term > prev.Term+1 {
		t.Fatalf("term moved from %d to %d", prev.Term, st.Term)
	}
	if v, pv := st.GetSettings().GetConfigVersion(), prev.GetSettings().GetConfigVersion(); v != pv && v != pv+1 {
		t.Fatalf("configuration version moved from %d to %d", pv, v)
	}
	if _, ok := st.GetSettings().GetPostgresParameters()["primary_conninfo"]; ok {
		t.Fatalf("a managed setting in the cluster parameters: %v", st.Settings.PostgresParameters)
	}
	if st.Lease.Serial < prev.Lease.Serial {
		t.Fatalf("lease serial went back from %d to %d", prev.Lease.Serial, st.Lease.Serial)
	}
	maxCount := st.Settings.EventMaxCount
	if maxCount <= 0 {
		maxCount = DefaultEventMaxCount
	}
	if int64(len(st.Events)) > maxCount {
		t.Fatalf("%d events, cap %d", len(st.Events), maxCount)
	}
}

// TestPropertyDeterministic: any command sequence applied to two machines
// (one restored from a snapshot of the other half-way) gives identical
// states, identical results, and the invariants hold throughout.
func TestPropertyDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := New(), New()
		at := int64(1_700_000_000_000)
		a.Apply(1, initCmd(at))
		b.Apply(1, initCmd(at))
		steps := rapid.IntRange(1, 120).Draw(t, "steps")
		restoreAt := rapid.IntRange(0, steps).Draw(t, "restoreAt")
		for i := 0; i < steps; i++ {
			if i == restoreAt {
				snap, err := a.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				b = New()
				b.Apply(1, initCmd(0)) // state that Restore must discard
				if err := b.Restore(snap); err != nil {
					t.Fatal(err)
				}
			}
			at += int64(rapid.IntRange(0, 3000).Draw(t, "dt"))
			prev := a.State()
			cmd := genCommand(t, prev, at)
			enc, err := Encode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			idx := uint64(i + 2)
			ra, rb := a.Apply(idx, cmd), b.Apply(idx, dec)
			if (ra.Err == nil) != (rb.Err == nil) || ra.NodeID != rb.NodeID {
				t.Fatalf("step %d: results differ: %v / %v", i, ra, rb)
			}
			sa, sb := a.State(), b.State()
			if !proto.Equal(sa, sb) {
				t.Fatalf("step %d: states differ after %v", i, cmd)
			}
			if ra.Err != nil {
				var fe *Error
				if !errors.As(ra.Err, &fe) {
					t.Fatalf("untyped error %v", ra.Err)
				}
				prev.AppliedIndex = idx
				if !proto.Equal(prev, sa) {
					t.Fatalf("rejected command %v changed the state", cmd)
				}
			}
			checkInvariants(t, prev, sa)
		}
	})
}

// TestPropertySnapshotRoundTrip: snapshot → restore gives the same state and
// the same answers to any further command.
func TestPropertySnapshotRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := New()
		at := int64(1_700_000_000_000)
		a.Apply(1, initCmd(at))
		steps := rapid.IntRange(0, 60).Draw(t, "steps")
		idx := uint64(1)
		for i := 0; i < steps; i++ {
			idx++
			at += 500
			a.Apply(idx, genCommand(t, a.State(), at))
		}
		snap, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		b := New()
		if err := b.Restore(snap); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(a.State(), b.State()) {
			t.Fatalf("restored state differs")
		}
		snap2, _ := b.Snapshot()
		if string(snap) != string(snap2) {
			t.Fatalf("snapshot of the restored state differs byte-wise")
		}
		for i := 0; i < 10; i++ {
			idx++
			at += 500
			cmd := genCommand(t, a.State(), at)
			ra, rb := a.Apply(idx, cmd), b.Apply(idx, proto.Clone(cmd).(*pb.Command))
			if (ra.Err == nil) != (rb.Err == nil) {
				t.Fatalf("answers differ after restore: %v / %v", ra.Err, rb.Err)
			}
		}
		if !proto.Equal(a.State(), b.State()) {
			t.Fatalf("states differ after further commands")
		}
	})
}

// TestPropertyStaleTermRejected: after any history, a promotion naming any
// term other than current+1 is rejected and changes nothing.
func TestPropertyStaleTermRejected(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := New()
		at := int64(1_700_000_000_000)
		a.Apply(1, initCmd(at))
		idx := uint64(1)
		for i := rapid.IntRange(0, 60).Draw(t, "steps"); i > 0; i-- {
			idx++
			at += 700
			a.Apply(idx, genCommand(t, a.State(), at))
		}
		st := a.State()
		bad := rapid.Uint64Range(0, st.Term+5).Filter(func(v uint64) bool { return v != st.Term+1 }).Draw(t, "term")
		id := rapid.Uint32Range(1, 6).Draw(t, "node")
		r := a.Apply(idx+1, &pb.Command{AtUnixMs: at, Cmd: &pb.Command_Promote{Promote: &pb.Promote{
			NodeId: id, Term: bad, Reason: "failover", LeaseSerial: st.Lease.Serial, LeaseMs: 4000}}})
		if r.Err == nil {
			t.Fatalf("promotion in term %d accepted while the cluster is in term %d", bad, st.Term)
		}
		if NodeByID(st, id) != nil && !errors.Is(r.Err, ErrStaleTerm) {
			t.Fatalf("promotion of a known node in term %d: %v, want stale_term", bad, r.Err)
		}
		after := a.State()
		after.AppliedIndex = st.AppliedIndex
		if !proto.Equal(st, after) {
			t.Fatalf("rejected promotion changed the state")
		}
	})
}
