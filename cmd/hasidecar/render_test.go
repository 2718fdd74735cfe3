package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

const (
	fxData    = pb.NodeKind_NODE_KIND_DATA
	fxWitness = pb.NodeKind_NODE_KIND_WITNESS

	fxPrimaryRole = pb.NodeRole_NODE_ROLE_PRIMARY
	fxStandbyRole = pb.NodeRole_NODE_ROLE_STANDBY
	fxWitnessRole = pb.NodeRole_NODE_ROLE_WITNESS
)

func fxConninfo(host string) string {
	return "host=" + host + " port=5432 user=hasidecar dbname=postgres connect_timeout=2"
}

// Node views as node.clusterView builds them: lag -1 and timeline 0 when the
// node's report is missing or stale, or the node has no Postgres.
func fxPrimaryView(id uint32, name string, tl uint32) *pb.NodeView {
	return &pb.NodeView{Id: id, Name: name, Kind: fxData, Role: fxPrimaryRole, Status: "running", Location: "dc1", Priority: 100,
		Timeline: tl, LagBytes: 0, Conninfo: fxConninfo(name), RaftState: "Leader", Voter: true, Active: true}
}

func fxStandbyView(id uint32, name, upstream string, tl uint32, lag int64) *pb.NodeView {
	return &pb.NodeView{Id: id, Name: name, Kind: fxData, Role: fxStandbyRole, Status: "running", UpstreamId: 1, Upstream: upstream,
		Location: "dc1", Priority: 100, Timeline: tl, LagBytes: lag, Conninfo: fxConninfo(name), RaftState: "Follower", Voter: true, Active: true}
}

func fxWitnessView(id uint32, name string) *pb.NodeView {
	return &pb.NodeView{Id: id, Name: name, Kind: fxWitness, Role: fxWitnessRole, Status: "running", Location: "dc2",
		LagBytes: -1, RaftState: "Follower", Voter: true, Active: true}
}

func fxWith(v *pb.NodeView, f func(*pb.NodeView)) *pb.NodeView {
	f(v)
	return v
}

type showCase struct {
	name string
	resp *pb.ShowResponse
	// nodes whose timeline and lag_bytes must be JSON null
	unknown []string
}

func showCases() []showCase {
	return []showCase{
		{
			name: "healthy",
			resp: &pb.ShowResponse{Cluster: "main", Term: 3, RaftLeader: "node1", FailoverMode: pb.FailoverMode_FAILOVER_MODE_AUTOMATIC, Nodes: []*pb.NodeView{
				fxPrimaryView(1, "node1", 1),
				fxStandbyView(2, "node2", "node1", 1, 0),
				fxStandbyView(3, "node3", "node1", 1, 1536),
				fxWitnessView(4, "witness"),
			}},
			unknown: []string{"witness"},
		},
		{
			name: "no_raft_leader",
			resp: &pb.ShowResponse{Cluster: "main", Term: 3, Nodes: []*pb.NodeView{
				fxWith(fxPrimaryView(1, "node1", 1), func(v *pb.NodeView) { v.RaftState = "Candidate" }),
				fxWith(fxStandbyView(2, "node2", "node1", 1, -1), func(v *pb.NodeView) { v.RaftState = "Candidate" }),
				fxWith(fxStandbyView(3, "node3", "node1", 0, -1), func(v *pb.NodeView) { v.Status, v.RaftState = "unreachable", "" }),
			}},
			unknown: []string{"node3"},
		},
		{
			name: "failed_and_unreachable",
			resp: &pb.ShowResponse{Cluster: "main", Term: 5, RaftLeader: "node2", Nodes: []*pb.NodeView{
				fxWith(fxPrimaryView(1, "node1", 0), func(v *pb.NodeView) {
					v.Role, v.Status, v.LagBytes, v.RaftState, v.Active = fxStandbyRole, "failed", -1, "", false
				}),
				fxPrimaryView(2, "node2", 2),
				fxWith(fxStandbyView(3, "node3", "node2", 2, 20<<20), func(v *pb.NodeView) { v.UpstreamId = 2 }),
				fxWith(fxWitnessView(4, "witness"), func(v *pb.NodeView) { v.Status, v.RaftState = "unreachable", "" }),
			}},
			unknown: []string{"node1", "witness"},
		},
		{
			name: "non_voter",
			resp: &pb.ShowResponse{Cluster: "main", Term: 3, RaftLeader: "node1", Nodes: []*pb.NodeView{
				fxPrimaryView(1, "node1", 1),
				fxStandbyView(2, "node2", "node1", 1, 3<<30),
				fxWith(fxStandbyView(5, "node5", "node1", 1, 5<<20), func(v *pb.NodeView) { v.Voter, v.Priority, v.Location = false, 0, "dc3" }),
				// A dead voter the leader demoted: no Raft state, still marked.
				fxWith(fxStandbyView(6, "node6", "node1", 1, -1), func(v *pb.NodeView) { v.Voter, v.Status, v.RaftState, v.Timeline = false, "unreachable", "", 0 }),
			}},
		},
		{
			name: "switchover_in_flight",
			resp: &pb.ShowResponse{Cluster: "main", Term: 7, RaftLeader: "witness", Switchover: &pb.Switchover{FromId: 1, ToId: 2, Term: 7}, Nodes: []*pb.NodeView{
				fxWith(fxPrimaryView(1, "node1", 3), func(v *pb.NodeView) { v.Status, v.Timeline, v.LagBytes, v.RaftState = "stopped", 0, -1, "Follower" }),
				fxStandbyView(2, "node2", "node1", 3, 0),
				fxWitnessView(3, "witness"),
			}},
			unknown: []string{"node1", "witness"},
		},
		{
			name: "pending_restart",
			resp: &pb.ShowResponse{Cluster: "main", Term: 3, RaftLeader: "node1", Nodes: []*pb.NodeView{
				fxWith(fxPrimaryView(1, "node1", 1), func(v *pb.NodeView) {
					v.Postgres = &pb.PostgresStatus{PendingRestart: []string{"max_connections", "shared_buffers"}}
				}),
				fxWith(fxStandbyView(2, "node2", "node1", 1, 0), func(v *pb.NodeView) {
					v.Postgres = &pb.PostgresStatus{PendingRestart: []string{"max_connections"}}
				}),
				fxStandbyView(3, "node3", "node1", 1, 0),
			}},
		},
		{
			name: "sync_degraded",
			resp: &pb.ShowResponse{Cluster: "main", Term: 5, RaftLeader: "node1", Synchronous: true, SyncMode: "on", SynchronousCount: 2, SyncCommittedCount: 1,
				SyncWarning: "synchronous degraded: commits wait for 1 of the synchronous set (node2), fewer than synchronous_count 2", Nodes: []*pb.NodeView{
					fxPrimaryView(1, "node1", 2),
					fxWith(fxStandbyView(2, "node2", "node1", 2, 0), func(v *pb.NodeView) { v.SyncStandby = true }),
					fxWith(fxStandbyView(3, "node3", "node1", 2, 0), func(v *pb.NodeView) { v.Status, v.LagBytes, v.Timeline = "stopped", -1, 0 }),
				}},
			unknown: []string{"node3"},
		},
		{
			name: "paused_manual",
			resp: &pb.ShowResponse{Cluster: "main", Term: 4, RaftLeader: "node1", Paused: true, FailoverMode: pb.FailoverMode_FAILOVER_MODE_MANUAL, Nodes: []*pb.NodeView{
				fxPrimaryView(1, "node1", 2),
				fxStandbyView(2, "node2", "node1", 2, 512),
			}},
		},
	}
}

func TestRenderShow(t *testing.T) {
	for _, tc := range showCases() {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			renderShow(&buf, tc.resp)
			golden(t, "show_"+tc.name+".golden", buf.Bytes())
		})
	}
}

func sortedKeys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func TestToShowJSON(t *testing.T) {
	wantTop := []string{"cluster", "failover_mode", "nodes", "paused", "raft_leader", "synchronous", "term", "warnings"}
	wantNode := []string{"conninfo", "id", "kind", "lag_bytes", "location", "name", "pending_restart", "priority", "raft_state", "role", "status", "sync", "tags", "timeline", "upstream", "voter"}
	for _, tc := range showCases() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.MarshalIndent(toShowJSON(tc.resp), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			golden(t, "show_"+tc.name+".json.golden", b)

			var top map[string]any
			if err := json.Unmarshal(b, &top); err != nil {
				t.Fatal(err)
			}
			wantTop := wantTop
			if tc.resp.Synchronous {
				wantTop = append(slices.Clone(wantTop), "synchronous_committed_count", "synchronous_count", "synchronous_mode")
				slices.Sort(wantTop)
			}
			if got := sortedKeys(top); !slices.Equal(got, wantTop) {
				t.Errorf("top-level sortedKeys = %v, want %v", got, wantTop)
			}
			nodes, ok := top["nodes"].([]any)
			if !ok || len(nodes) != len(tc.resp.Nodes) {
				t.Fatalf("nodes = %#v, want an array of %d", top["nodes"], len(tc.resp.Nodes))
			}
			for i, raw := range nodes {
				n := raw.(map[string]any)
				in := tc.resp.Nodes[i]
				if got := sortedKeys(n); !slices.Equal(got, wantNode) {
					t.Errorf("node %s sortedKeys = %v, want %v", in.Name, got, wantNode)
				}
				unknown := slices.Contains(tc.unknown, in.Name)
				for _, k := range []string{"timeline", "lag_bytes"} {
					if unknown && n[k] != nil {
						t.Errorf("node %s: %s = %v, want null (unknown)", in.Name, k, n[k])
					}
				}
				if (n["timeline"] == nil) != (in.Timeline == 0) {
					t.Errorf("node %s: timeline = %v for input %d", in.Name, n["timeline"], in.Timeline)
				}
				if (n["lag_bytes"] == nil) != (in.LagBytes < 0) {
					t.Errorf("node %s: lag_bytes = %v for input %d", in.Name, n["lag_bytes"], in.LagBytes)
				}
				if rs := n["raft_state"].(string); rs != strings.ToLower(rs) {
					t.Errorf("node %s: raft_state %q is not lower case", in.Name, rs)
				}
			}
		})
	}
}

func TestToShowJSONEmpty(t *testing.T) {
	b, err := json.Marshal(toShowJSON(&pb.ShowResponse{Cluster: "main"}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cluster":"main","term":0,"raft_leader":"","paused":false,"failover_mode":"automatic","synchronous":false,"warnings":[],"nodes":[]}`
	if string(b) != want {
		t.Errorf("got %s\nwant %s", b, want)
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   int64
		want string
	}{
		{"zero", 0, "0 B"},
		{"below a kB", 1023, "1023 B"},
		{"one kB", 1024, "1.0 kB"},
		{"a kB and a half", 1536, "1.5 kB"},
		{"one MB", 1 << 20, "1.0 MB"},
		{"sixteen MB", 16 << 20, "16.0 MB"},
		{"one GB", 1 << 30, "1.0 GB"},
		{"terabyte in GB", 1 << 40, "1024.0 GB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := humanBytes(tc.in); got != tc.want {
				t.Errorf("humanBytes(%d) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func fxMillis(y int, mo time.Month, d, h, mi, s, milli int) int64 {
	return time.Date(y, mo, d, h, mi, s, milli*int(time.Millisecond), time.UTC).UnixMilli()
}

func TestRenderEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		evs  []*pb.Event
	}{
		{name: "empty"},
		{name: "failover_history", evs: []*pb.Event{
			{Id: 9, NodeId: 1, NodeName: "node1", Type: "standby_follow", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 2, 30, 450), Term: 4,
				Details: "node1 follows node2 after pg_rewind"},
			{Id: 8, NodeId: 2, NodeName: "node2", Type: "standby_promote", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 1, 5, 7), Term: 4,
				Details: "node2 promoted to primary on timeline 2"},
			{Id: 7, NodeId: 2, NodeName: "node2", Type: "failover", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 1, 4, 999), Term: 4,
				Details: "node1's lease expired; node2 has the most recent LSN 0/5000060"},
			{Id: 6, NodeId: 3, NodeName: "node3", Type: "standby_follow", Ok: false, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 1, 0, 0), Term: 3,
				Details: "cannot reach node1: connection refused"},
			{Id: 5, NodeName: "", Type: "cluster_paused", Ok: true, TimestampUnixMs: fxMillis(2024, 4, 30, 23, 59, 59, 1), Term: 3, Details: "automatic failover paused"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			renderEvents(&buf, tc.evs)
			golden(t, "events_"+tc.name+".golden", buf.Bytes())

			b, err := json.MarshalIndent(toEventsJSON(tc.evs), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "events_"+tc.name+".json.golden", append(b, '\n'))
		})
	}
}

// The text timestamp follows the local zone; JSON is always UTC.
func TestRenderEventsLocalZone(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("CEST", 2*3600)
	defer func() { time.Local = saved }()
	evs := []*pb.Event{{Id: 1, NodeId: 1, NodeName: "node1", Type: "primary_register", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 0, 0, 0), Term: 1}}
	var buf bytes.Buffer
	renderEvents(&buf, evs)
	if !strings.Contains(buf.String(), "2024-05-01 12:00:00.000") {
		t.Errorf("text timestamp not in the local zone:\n%s", buf.String())
	}
	if got := toEventsJSON(evs)[0].Timestamp; got != "2024-05-01T10:00:00.000Z" {
		t.Errorf("JSON timestamp = %q, want 2024-05-01T10:00:00.000Z", got)
	}
}

func TestRenderStatus(t *testing.T) {
	const sysid = 7365012345678901234
	for _, tc := range []struct {
		name string
		st   *pb.StatusResponse
	}{
		{name: "primary", st: &pb.StatusResponse{NodeId: 1, Name: "node1", Kind: fxData, Cluster: "main", RaftState: "Leader", RaftLeader: "node1",
			AppliedIndex: 120, CommitIndex: 120, Term: 3, Role: fxPrimaryRole, DataDir: "/var/lib/postgresql/17/main", Version: "1.2.0",
			ReconcilerState: "primary: lease held",
			Postgres: &pb.PostgresStatus{Running: true, Timeline: 2, SystemIdentifier: sysid, CurrentLsn: 0x3000060, FlushLsn: 0x3000060, Port: 5432,
				Connections: 7, Replication: []*pb.ReplicationRow{{ApplicationName: "node2", State: "streaming", SlotName: "hasidecar_node2"}},
				FreeBytes: 40 << 30, TotalBytes: 100 << 30, DiskFullThresholdBytes: 64 << 20}}},
		{name: "standby", st: &pb.StatusResponse{NodeId: 2, Name: "node2", Kind: fxData, Cluster: "main", RaftState: "Follower", RaftLeader: "node1",
			AppliedIndex: 119, CommitIndex: 120, Term: 3, Role: fxStandbyRole, DataDir: "/var/lib/postgresql/17/main", Version: "1.2.0",
			ReconcilerState: "standby: following node1",
			Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, Timeline: 2, SystemIdentifier: sysid, ReceiveLsn: 0x1_0300_0060, ReplayLsn: 0x1_0200_0028,
				WalReceiverStatus: "streaming", ReplayLagMs: 1250, Port: 5433}}},
		{name: "witness", st: &pb.StatusResponse{NodeId: 4, Name: "witness", Kind: fxWitness, Cluster: "main", RaftState: "Follower", RaftLeader: "node1",
			AppliedIndex: 120, CommitIndex: 120, Term: 3, Role: fxWitnessRole, Version: "1.2.0"}},
		{name: "standby_stopped", st: &pb.StatusResponse{NodeId: 3, Name: "node3", Kind: fxData, Cluster: "main", RaftState: "Follower", RaftLeader: "node1",
			AppliedIndex: 120, CommitIndex: 120, Term: 3, Role: fxStandbyRole, DataDir: "/var/lib/postgresql/17/main", Version: "1.2.0",
			ReconcilerState: "waiting for manual rejoin",
			Postgres: &pb.PostgresStatus{Port: 5432, Error: "dial unix /var/run/postgresql/.s.PGSQL.5432: connect: no such file or directory",
				FreeBytes: 4096, TotalBytes: 100 << 30, DiskFull: true, DiskFullThresholdBytes: 64 << 20,
				DiskFullReason: "4096 bytes free on the data directory's filesystem (threshold 67108864)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			renderStatus(&buf, tc.st)
			golden(t, "status_"+tc.name+".golden", buf.Bytes())

			b, err := json.MarshalIndent(toStatusJSON(tc.st), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "status_"+tc.name+".json.golden", append(b, '\n'))
		})
	}
}

func TestLSNText(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   uint64
		want string
	}{
		{"zero is no LSN", 0, ""},
		{"low word only", 0x3000060, "0/3000060"},
		{"high word", 0x1_0200_0028, "1/2000028"},
		{"max", ^uint64(0), "FFFFFFFF/FFFFFFFF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lsnText(tc.in); got != tc.want {
				t.Errorf("lsnText(%#x) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
