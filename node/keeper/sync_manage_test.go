package keeper

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func streaming(name string, flush uint64, syncState string) pgctl.ReplicationRow {
	return pgctl.ReplicationRow{ApplicationName: name, State: "streaming", FlushLSN: flush, SyncState: syncState}
}

// syncCluster: pg1 primary in synchronous mode with standbys pg2, pg3 and
// the committed synchronous set members.
func syncCluster(t *testing.T, members []uint32, nosync bool) (*Keeper, *clock.Manual, *fakelog.Log, *fakePG) {
	return syncClusterK(t, members, nosync, 0, 1)
}

// syncClusterK: syncCluster with synchronous_count k (settings) and the
// committed count kf.
func syncClusterK(t *testing.T, members []uint32, nosync bool, k int32, kf uint32) (*Keeper, *clock.Manual, *fakelog.Log, *fakePG) {
	t.Helper()
	clk := clock.NewManual(t0)
	lg := fakelog.New(clk)
	must := func(cmd *pb.Command) { lg.MustApply(t, cmd) }
	must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: &pb.Settings{LeaseMs: 4000, Synchronous: true, SynchronousCount: k}}}})
	for _, n := range []string{"pg1", "pg2", "pg3"} {
		var tags []string
		if n == "pg2" && nosync {
			tags = []string{"nosync"}
		}
		must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: n, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100, Tags: tags}}})
	}
	must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	for _, id := range []uint32{2, 3} {
		must(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: id, UpstreamId: 1, Term: 1}}})
	}
	if len(members) > 0 {
		must(&pb.Command{Cmd: &pb.Command_SetSyncQuorum{SetSyncQuorum: &pb.SetSyncQuorum{Term: 1, PrimaryId: 1, NodeIds: members, Count: kf}}})
	}
	pg := newFakePG()
	pg.loadOnReload = true
	_ = pg.Start(context.Background())
	return newTestKeeper(t, testConfig(t, "pg1"), clk, lg, pg), clk, lg, pg
}

// TestManageSync: the primary's synchronous-set management: widen the FSM
// first, except from an empty set (Postgres first, then the FSM once the
// standby holds everything acknowledged before); narrow Postgres first and commit only once the removed member's
// walsender no longer counts and a remaining member flushed everything;
// keep inherited members during the grace after the term began.
func TestManageSync(t *testing.T) {
	ctx := context.Background()
	type round struct {
		advance     time.Duration
		replication []pgctl.ReplicationRow
		commit      []uint32 // the set committed this round; nil: none
		count       uint32   // its count (0: not checked)
		committed   bool
		names       string // synchronous_standby_names written ("-": not checked)
	}
	cases := []struct {
		name    string
		members []uint32
		nosync  bool
		k       int32  // synchronous_count (0: 1)
		kf      uint32 // the committed count (0: 1)
		rounds  []round
	}{
		{name: "widen from empty: Postgres waits for the standby before the FSM names it", rounds: []round{
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "async")}, names: `ANY 1 ("pg2")`},
			// Counted as synchronous: the floor is the flush position now (1000).
			{replication: []pgctl.ReplicationRow{streaming("pg2", 900, "quorum")}, names: `ANY 1 ("pg2")`},
			{replication: []pgctl.ReplicationRow{streaming("pg2", 950, "quorum")}, names: `ANY 1 ("pg2")`},
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "quorum")}, commit: []uint32{2}, committed: true, names: `ANY 1 ("pg2")`},
		}},
		{name: "widen a non-empty set: the FSM first", members: []uint32{3}, rounds: []round{
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "async"), streaming("pg3", 1000, "quorum")}, commit: []uint32{3, 2}, committed: true, names: "-"},
		}},
		{name: "grace: an inherited member that does not stream yet stays", members: []uint32{2}, rounds: []round{
			{advance: 7 * time.Second, names: "-"},
		}},
		{name: "after the grace the last member leaves; the gate takes over", members: []uint32{2}, rounds: []round{
			{names: "-"},
			{advance: 9 * time.Second, committed: true, names: pgctl.GateApplicationName},
		}},
		{name: "narrow: commit once the remaining member flushed everything", members: []uint32{2, 3}, rounds: []round{
			{names: "-", replication: []pgctl.ReplicationRow{streaming("pg3", 900, "quorum")}},
			{advance: 9 * time.Second, replication: []pgctl.ReplicationRow{streaming("pg3", 900, "quorum")}, names: `ANY 1 ("pg3")`},
			{replication: []pgctl.ReplicationRow{streaming("pg3", 1000, "quorum")}, commit: []uint32{3}, committed: true, names: `ANY 1 ("pg3")`},
		}},
		{name: "narrow: not while the removed member's walsender still counts", members: []uint32{2, 3}, nosync: true, rounds: []round{
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "quorum"), streaming("pg3", 1000, "quorum")}, names: `ANY 1 ("pg3")`},
			// It no longer counts: the floor is the flush position now.
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "async"), streaming("pg3", 1000, "quorum")}, names: `ANY 1 ("pg3")`},
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "async"), streaming("pg3", 1000, "quorum")}, commit: []uint32{3}, committed: true, names: `ANY 1 ("pg3")`},
		}},
		{name: "raise k 1 → 2: Postgres first, the FSM once two members flushed the floor", members: []uint32{2, 3}, k: 2, kf: 1, rounds: []round{
			{replication: []pgctl.ReplicationRow{streaming("pg2", 900, "quorum"), streaming("pg3", 900, "quorum")}, names: `ANY 2 ("pg2", "pg3")`},
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "quorum"), streaming("pg3", 900, "quorum")}, names: `ANY 2 ("pg2", "pg3")`},
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "quorum"), streaming("pg3", 1000, "quorum")}, commit: []uint32{2, 3}, count: 2, committed: true, names: `ANY 2 ("pg2", "pg3")`},
		}},
		{name: "lower k 2 → 1: the FSM first, then Postgres", members: []uint32{2, 3}, k: 1, kf: 2, rounds: []round{
			{replication: []pgctl.ReplicationRow{streaming("pg2", 1000, "quorum"), streaming("pg3", 1000, "quorum")}, commit: []uint32{2, 3}, count: 1, committed: true, names: `ANY 1 ("pg2", "pg3")`},
		}},
		{name: "k 2, a member gone (on): lower k first, then narrow", members: []uint32{2, 3}, k: 2, kf: 2, rounds: []round{
			{replication: []pgctl.ReplicationRow{streaming("pg3", 1000, "quorum")}, names: "-"}, // the grace
			// k_f is 1 now, but on mode's target for two names is still 2
			// (k_p = max(k_f, target)): commits keep waiting until pg2 is out.
			{advance: 9 * time.Second, replication: []pgctl.ReplicationRow{streaming("pg3", 1000, "quorum")}, commit: []uint32{2, 3}, count: 1, committed: true, names: `ANY 2 ("pg2", "pg3")`},
			{replication: []pgctl.ReplicationRow{streaming("pg3", 1000, "quorum")}, names: `ANY 1 ("pg3")`},
			{replication: []pgctl.ReplicationRow{streaming("pg3", 1000, "quorum")}, commit: []uint32{3}, count: 1, committed: true, names: `ANY 1 ("pg3")`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kf := tc.kf
			if kf == 0 {
				kf = 1
			}
			k, clk, lg, pg := syncClusterK(t, tc.members, tc.nosync, tc.k, kf)
			for i, r := range tc.rounds {
				clk.Advance(r.advance)
				pg.replication = r.replication
				before := len(lg.Proposed())
				if err := k.manageSync(ctx, 1); err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				var sets [][]uint32
				var counts []uint32
				for _, c := range lg.Proposed()[before:] {
					if s := c.GetSetSyncQuorum(); s != nil {
						sets, counts = append(sets, s.NodeIds), append(counts, s.Count)
					}
				}
				if r.committed != (len(sets) == 1) || (r.committed && !slices.Equal(sets[0], r.commit)) {
					t.Fatalf("round %d: committed %v, want %v (%v)", i, sets, r.commit, r.committed)
				}
				if r.committed && r.count != 0 && counts[0] != r.count {
					t.Fatalf("round %d: committed count %d, want %d", i, counts[0], r.count)
				}
				if r.names != "-" {
					if got := pg.settings["synchronous_standby_names"]; got != r.names {
						t.Fatalf("round %d: synchronous_standby_names %q, want %q", i, got, r.names)
					}
				}
			}
		})
	}
}

// TestManageSyncModeOff: with synchronous mode switched off the primary
// empties the committed set.
func TestManageSyncModeOff(t *testing.T) {
	k, _, lg, _ := syncCluster(t, []uint32{2}, false)
	lg.Apply(&pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Synchronous: new(bool)}}})
	if err := k.manageSync(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if got := lg.State().SyncStandbys; len(got) != 0 {
		t.Fatalf("synchronous set %v after the mode was switched off, want empty", got)
	}
}
