package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The CLI's default thresholds (the node check flags' defaults).
var defaultThresholds = thresholds{
	LagWarnBytes: 16 << 20, LagCritBytes: 256 << 20,
	LagWarnMs: 60_000, LagCritMs: 300_000,
	ArchiveWarn: 16, ArchiveCrit: 128,
	SlotWarnBytes: 1 << 30, SlotCritBytes: 8 << 30,
}

func fxStreaming(names ...string) []*pb.ReplicationRow {
	var rows []*pb.ReplicationRow
	for _, n := range names {
		rows = append(rows, &pb.ReplicationRow{ApplicationName: n, State: "streaming", SlotName: "hasidecar_" + n, SyncState: "async"})
	}
	return rows
}

func fxPrimaryPG(tl uint32, replication ...*pb.ReplicationRow) *pb.PostgresStatus {
	return &pb.PostgresStatus{Running: true, Timeline: tl, CurrentLsn: 0x5000060, Port: 5432, Replication: replication}
}

func fxStandbyPG(tl uint32, lagMs int64) *pb.PostgresStatus {
	return &pb.PostgresStatus{Running: true, InRecovery: true, Timeline: tl, ReceiveLsn: 0x5000060, ReplayLsn: 0x5000060,
		WalReceiverStatus: "streaming", ReplayLagMs: lagMs, Port: 5432}
}

// fxDisk sets what the node measured on a 1GB data directory filesystem
// with the default threshold, as node.sampleDisk does.
func fxDisk(pg *pb.PostgresStatus, free uint64) *pb.PostgresStatus {
	pg.FreeBytes, pg.TotalBytes, pg.DiskFullThresholdBytes = free, 1<<30, 64<<20
	if free < 64<<20 {
		pg.DiskFull = true
		pg.DiskFullReason = fmt.Sprintf("%d bytes free on the data directory's filesystem (threshold %d)", free, 64<<20)
	}
	return pg
}

func fxStatus(name string, role pb.NodeRole, pg *pb.PostgresStatus) *pb.StatusResponse {
	return &pb.StatusResponse{Name: name, Kind: fxData, Role: role, RaftState: "Follower", Postgres: pg, ReconcilerState: "idle"}
}

func fxPG(pg *pb.PostgresStatus, f func(*pb.PostgresStatus)) *pb.PostgresStatus {
	f(pg)
	return pg
}

// fxCluster is the leader's view: node1 primary on timeline 2, node2 and
// node3 streaming standbys (node2's lag given), a witness. Postgres
// statuses are filled in as node.clusterView does for fresh reports.
func fxCluster(node2Lag int64) *pb.ShowResponse {
	return &pb.ShowResponse{Cluster: "main", Term: 3, RaftLeader: "node1", Nodes: []*pb.NodeView{
		fxWith(fxPrimaryView(1, "node1", 2), func(v *pb.NodeView) { v.Postgres = fxPrimaryPG(2, fxStreaming("node2", "node3")...) }),
		fxWith(fxStandbyView(2, "node2", "node1", 2, node2Lag), func(v *pb.NodeView) { v.Postgres = fxStandbyPG(2, 0) }),
		fxWith(fxStandbyView(3, "node3", "node1", 2, 0), func(v *pb.NodeView) { v.Postgres = fxStandbyPG(2, 0) }),
		fxWitnessView(4, "witness"),
	}}
}

func fxShow(show *pb.ShowResponse, f func(*pb.ShowResponse)) *pb.ShowResponse {
	f(show)
	return show
}

func checkSummary(rep checkReport) []string {
	var out []string
	for _, c := range rep.Checks {
		out = append(out, c.Name+"="+c.Status)
		if c.Status != checkNames[c.Code] {
			out = append(out, fmt.Sprintf("(status %s disagrees with code %d)", c.Status, c.Code))
		}
	}
	return out
}

type checkCase struct {
	name       string
	rep        func() checkReport
	wantStatus string
	wantCode   int
	wantChecks []string
}

func nodeCheckCases() []checkCase {
	th := defaultThresholds
	standby := func(pg *pb.PostgresStatus, node2Lag int64) func() checkReport {
		return func() checkReport { return nodeChecks(fxStatus("node2", fxStandbyRole, pg), fxCluster(node2Lag), th) }
	}
	primary := func(pg *pb.PostgresStatus, show *pb.ShowResponse) func() checkReport {
		return func() checkReport { return nodeChecks(fxStatus("node1", fxPrimaryRole, pg), show, th) }
	}
	standbyOK := []string{"role=OK", "pending_restart=OK", "lag_bytes=OK", "lag_seconds=OK", "upstream=OK", "timeline=OK", "archive_ready=OK"}
	primaryOK := []string{"role=OK", "pending_restart=OK", "downstream=OK", "slots=OK", "slot_retained=OK", "archive_ready=OK"}
	slots := func(retained ...int64) func(*pb.PostgresStatus) {
		return func(p *pb.PostgresStatus) {
			for i, b := range retained {
				p.Slots = append(p.Slots, &pb.SlotStatus{Name: fmt.Sprintf("hasidecar_node%d", i+2), Active: i == 0, RetainedBytes: b})
			}
		}
	}
	// with replaces the named checks' statuses in base.
	with := func(base []string, replace ...string) []string {
		out := slices.Clone(base)
		for _, r := range replace {
			name, _, _ := strings.Cut(r, "=")
			for i := range out {
				if n, _, _ := strings.Cut(out[i], "="); n == name {
					out[i] = r
				}
			}
		}
		return out
	}
	return []checkCase{
		{name: "primary_all_standbys_streaming", rep: primary(fxPrimaryPG(2, fxStreaming("node2", "node3")...), fxCluster(0)),
			wantStatus: "OK", wantCode: 0, wantChecks: primaryOK},
		{name: "primary_standby_not_connected", rep: primary(fxPrimaryPG(2, fxStreaming("node2")...), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(primaryOK, "downstream=WARNING")},
		{name: "primary_standby_catching_up_is_not_connected", rep: primary(fxPrimaryPG(2, append(fxStreaming("node2"),
			&pb.ReplicationRow{ApplicationName: "node3", State: "catchup", SlotName: "hasidecar_node3"})...), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(primaryOK, "downstream=WARNING")},
		{name: "primary_inactive_standby_not_expected", rep: primary(fxPrimaryPG(2, fxStreaming("node2")...),
			fxShow(fxCluster(0), func(s *pb.ShowResponse) { s.Nodes[2].Active, s.Nodes[2].Status = false, "failed" })),
			wantStatus: "OK", wantCode: 0, wantChecks: primaryOK},
		{name: "primary_standby_without_slot", rep: primary(fxPrimaryPG(2, append(fxStreaming("node2"),
			&pb.ReplicationRow{ApplicationName: "node3", State: "streaming"})...), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(primaryOK, "slots=WARNING")},
		{name: "primary_no_standbys", rep: primary(fxPrimaryPG(1), &pb.ShowResponse{Nodes: []*pb.NodeView{fxPrimaryView(1, "node1", 1)}}),
			wantStatus: "OK", wantCode: 0, wantChecks: primaryOK},

		{name: "standby_healthy", rep: standby(fxStandbyPG(2, 0), 0),
			wantStatus: "OK", wantCode: 0, wantChecks: standbyOK},
		{name: "standby_lag_bytes_below_warning", rep: standby(fxStandbyPG(2, 0), 16<<20-1),
			wantStatus: "OK", wantCode: 0, wantChecks: standbyOK},
		{name: "standby_lag_bytes_at_warning", rep: standby(fxStandbyPG(2, 0), 16<<20),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "lag_bytes=WARNING")},
		{name: "standby_lag_bytes_over_warning", rep: standby(fxStandbyPG(2, 0), 100<<20),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "lag_bytes=WARNING")},
		{name: "standby_lag_bytes_over_critical", rep: standby(fxStandbyPG(2, 0), 300<<20),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "lag_bytes=CRITICAL")},
		{name: "standby_lag_bytes_unknown", rep: standby(fxStandbyPG(2, 0), -1),
			wantStatus: "UNKNOWN", wantCode: 3, wantChecks: with(standbyOK, "lag_bytes=UNKNOWN")},
		{name: "standby_not_in_cluster_view", rep: func() checkReport {
			return nodeChecks(fxStatus("node9", fxStandbyRole, fxStandbyPG(2, 0)), fxCluster(0), th)
		}, wantStatus: "UNKNOWN", wantCode: 3, wantChecks: with(standbyOK, "lag_bytes=UNKNOWN")},
		{name: "standby_replay_lag_below_warning", rep: standby(fxStandbyPG(2, 59_999), 0),
			wantStatus: "OK", wantCode: 0, wantChecks: standbyOK},
		{name: "standby_replay_lag_over_warning", rep: standby(fxStandbyPG(2, 90_500), 0),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "lag_seconds=WARNING")},
		{name: "standby_replay_lag_at_critical", rep: standby(fxStandbyPG(2, 300_000), 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "lag_seconds=CRITICAL")},
		{name: "standby_not_streaming", rep: standby(fxPG(fxStandbyPG(2, 0), func(p *pb.PostgresStatus) { p.WalReceiverStatus = "" }), 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "upstream=CRITICAL")},
		{name: "standby_wal_receiver_starting", rep: standby(fxPG(fxStandbyPG(2, 0), func(p *pb.PostgresStatus) { p.WalReceiverStatus = "starting" }), 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "upstream=CRITICAL")},
		{name: "standby_timeline_mismatch", rep: standby(fxStandbyPG(1, 0), 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "timeline=CRITICAL")},
		{name: "standby_primary_timeline_unknown", rep: func() checkReport {
			show := fxShow(fxCluster(0), func(s *pb.ShowResponse) { s.Nodes[0].Timeline = 0 })
			return nodeChecks(fxStatus("node2", fxStandbyRole, fxStandbyPG(2, 0)), show, th)
		}, wantStatus: "UNKNOWN", wantCode: 3, wantChecks: with(standbyOK, "timeline=UNKNOWN")},
		{name: "standby_no_primary", rep: func() checkReport {
			show := fxShow(fxCluster(0), func(s *pb.ShowResponse) { s.Nodes = s.Nodes[1:] })
			return nodeChecks(fxStatus("node2", fxStandbyRole, fxStandbyPG(2, 0)), show, th)
		}, wantStatus: "UNKNOWN", wantCode: 3, wantChecks: with(standbyOK, "timeline=UNKNOWN")},

		{name: "pending_restart", rep: standby(fxPG(fxStandbyPG(2, 0), func(p *pb.PostgresStatus) { p.PendingRestart = []string{"max_connections", "shared_buffers"} }), 0),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "pending_restart=WARNING")},

		{name: "role_primary_but_in_recovery", rep: primary(fxStandbyPG(2, 0), fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"role=CRITICAL"}},
		// A role mismatch stops the checks: the ones that follow would
		// compare the node with itself.
		{name: "role_standby_but_writable", rep: standby(fxPrimaryPG(2), 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"role=CRITICAL"}},
		{name: "role_unregistered", rep: func() checkReport {
			return nodeChecks(fxStatus("node2", pb.NodeRole_NODE_ROLE_UNSPECIFIED, fxStandbyPG(2, 0)), fxCluster(0), th)
		}, wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "role=WARNING")},

		{name: "postgres_not_running", rep: standby(&pb.PostgresStatus{Port: 5432, Error: "connection refused"}, 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"postgres=CRITICAL"}},
		{name: "postgres_status_missing", rep: primary(nil, fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"postgres=CRITICAL"}},

		{name: "witness", rep: func() checkReport {
			st := &pb.StatusResponse{Name: "witness", Kind: fxWitness, Role: fxWitnessRole, RaftState: "Follower"}
			return nodeChecks(st, fxCluster(0), th)
		}, wantStatus: "OK", wantCode: 0, wantChecks: []string{"role=OK"}},

		{name: "slot_retained_below_warning", rep: primary(fxPG(fxPrimaryPG(2, fxStreaming("node2", "node3")...), slots(1<<20, 1<<30-1)), fxCluster(0)),
			wantStatus: "OK", wantCode: 0, wantChecks: primaryOK},
		{name: "slot_retained_at_warning", rep: primary(fxPG(fxPrimaryPG(2, fxStreaming("node2", "node3")...), slots(1<<20, 1<<30)), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(primaryOK, "slot_retained=WARNING")},
		{name: "slot_retained_over_critical", rep: primary(fxPG(fxPrimaryPG(2, fxStreaming("node2", "node3")...), slots(9<<30, 1<<20)), fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(primaryOK, "slot_retained=CRITICAL")},
		{name: "archive_ready_below_warning", rep: primary(fxPG(fxPrimaryPG(2, fxStreaming("node2", "node3")...), func(p *pb.PostgresStatus) { p.ArchiveReady = 15 }), fxCluster(0)),
			wantStatus: "OK", wantCode: 0, wantChecks: primaryOK},
		{name: "archive_ready_at_warning", rep: primary(fxPG(fxPrimaryPG(2, fxStreaming("node2", "node3")...), func(p *pb.PostgresStatus) { p.ArchiveReady = 16 }), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(primaryOK, "archive_ready=WARNING")},
		{name: "archive_ready_over_critical", rep: primary(fxPG(fxPrimaryPG(2, fxStreaming("node2", "node3")...), func(p *pb.PostgresStatus) { p.ArchiveReady = 500 }), fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(primaryOK, "archive_ready=CRITICAL")},
		{name: "archive_ready_on_standby", rep: standby(fxPG(fxStandbyPG(2, 0), func(p *pb.PostgresStatus) { p.ArchiveReady = 20 }), 0),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "archive_ready=WARNING")},

		{name: "standby_with_set_aside_copy", rep: func() checkReport {
			st := fxStatus("node2", fxStandbyRole, fxStandbyPG(2, 0))
			st.SetAsideCopies = []string{"/var/lib/postgresql/15/main.old-1767225600"}
			return nodeChecks(st, fxCluster(0), th)
		}, wantStatus: "WARNING", wantCode: 1, wantChecks: append([]string{"set_aside=WARNING"}, standbyOK...)},
		{name: "set_aside_copy_kept_when_postgres_down", rep: func() checkReport {
			st := fxStatus("node2", fxStandbyRole, &pb.PostgresStatus{Port: 5432})
			st.SetAsideCopies = []string{"/data/a.old-1", "/data/a.old-2"}
			return nodeChecks(st, fxCluster(0), th)
		}, wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"set_aside=WARNING", "postgres=CRITICAL"}},

		// The data directory's disk (default threshold 64MB; 1GB filesystems).
		{name: "disk_plenty_free", rep: primary(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 900<<20), fxCluster(0)),
			wantStatus: "OK", wantCode: 0, wantChecks: append([]string{"disk=OK"}, primaryOK...)},
		{name: "disk_at_twice_the_threshold", rep: primary(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 128<<20), fxCluster(0)),
			wantStatus: "OK", wantCode: 0, wantChecks: append([]string{"disk=OK"}, primaryOK...)},
		{name: "disk_below_twice_the_threshold", rep: primary(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 128<<20-1), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: append([]string{"disk=WARNING"}, primaryOK...)},
		{name: "disk_below_ten_percent", rep: primary(fxPG(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 900<<20), func(p *pb.PostgresStatus) { p.TotalBytes = 10 << 30 }), fxCluster(0)),
			wantStatus: "WARNING", wantCode: 1, wantChecks: append([]string{"disk=WARNING"}, primaryOK...)},
		{name: "disk_full", rep: primary(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 10<<20), fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: append([]string{"disk=CRITICAL"}, primaryOK...)},
		{name: "disk_full_postgres_down", rep: standby(fxDisk(&pb.PostgresStatus{Port: 5432}, 0), 0),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"disk=CRITICAL", "postgres=CRITICAL"}},
		{name: "disk_separate_pg_wal_full", rep: primary(fxPG(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 900<<20), func(p *pb.PostgresStatus) {
			p.WalFreeBytes, p.WalTotalBytes, p.DiskFull = 1<<20, 256<<20, true
			p.DiskFullReason = "1048576 bytes free on pg_wal's filesystem (threshold 67108864)"
		}), fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: append([]string{"disk=CRITICAL"}, primaryOK...)},
		{name: "disk_write_failed_with_space_measured", rep: primary(fxPG(fxDisk(fxPrimaryPG(2, fxStreaming("node2", "node3")...), 900<<20), func(p *pb.PostgresStatus) {
			p.DiskFull, p.DiskFullReason = true, "a write failed for lack of space: could not extend file: No space left on device"
		}), fxCluster(0)),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: append([]string{"disk=CRITICAL"}, primaryOK...)},

		{name: "precedence_warning_over_unknown", rep: standby(fxStandbyPG(2, 61_000), -1),
			wantStatus: "WARNING", wantCode: 1, wantChecks: with(standbyOK, "lag_bytes=UNKNOWN", "lag_seconds=WARNING")},
		{name: "precedence_critical_over_warning_and_unknown", rep: standby(fxPG(fxStandbyPG(1, 61_000), func(p *pb.PostgresStatus) { p.WalReceiverStatus = "" }), -1),
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "lag_bytes=UNKNOWN", "lag_seconds=WARNING", "upstream=CRITICAL", "timeline=CRITICAL")},

		// --node NAME: the leader's view of another node.
		{name: "view_standby_running", rep: func() checkReport { return nodeChecksFromView("node2", fxCluster(0), th) },
			wantStatus: "OK", wantCode: 0, wantChecks: standbyOK},
		{name: "view_standby_lagging", rep: func() checkReport { return nodeChecksFromView("node2", fxCluster(300<<20), th) },
			wantStatus: "CRITICAL", wantCode: 2, wantChecks: with(standbyOK, "lag_bytes=CRITICAL")},
		{name: "view_primary_running", rep: func() checkReport { return nodeChecksFromView("node1", fxCluster(0), th) },
			wantStatus: "OK", wantCode: 0, wantChecks: primaryOK},
		{name: "view_witness_running", rep: func() checkReport { return nodeChecksFromView("witness", fxCluster(0), th) },
			wantStatus: "OK", wantCode: 0, wantChecks: []string{"role=OK"}},
		{name: "view_unreachable", rep: func() checkReport {
			show := fxShow(fxCluster(0), func(s *pb.ShowResponse) {
				n := s.Nodes[2]
				n.Status, n.Timeline, n.LagBytes, n.RaftState, n.Postgres = "unreachable", 0, -1, "", nil
			})
			return nodeChecksFromView("node3", show, th)
		}, wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"status=CRITICAL"}},
		{name: "view_failed", rep: func() checkReport {
			show := fxShow(fxCluster(0), func(s *pb.ShowResponse) {
				n := s.Nodes[2]
				n.Status, n.Active, n.Timeline, n.LagBytes, n.Postgres = "failed", false, 0, -1, nil
			})
			return nodeChecksFromView("node3", show, th)
		}, wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"status=CRITICAL"}},
		{name: "view_unreachable_witness", rep: func() checkReport {
			show := fxShow(fxCluster(0), func(s *pb.ShowResponse) { s.Nodes[3].Status, s.Nodes[3].RaftState = "unreachable", "" })
			return nodeChecksFromView("witness", show, th)
		}, wantStatus: "CRITICAL", wantCode: 2, wantChecks: []string{"status=CRITICAL"}},
		{name: "view_unknown_node", rep: func() checkReport { return nodeChecksFromView("node9", fxCluster(0), th) },
			wantStatus: "UNKNOWN", wantCode: 3, wantChecks: []string{"node=UNKNOWN"}},
	}
}

func TestNodeChecks(t *testing.T) {
	var all bytes.Buffer
	for _, tc := range nodeCheckCases() {
		t.Run(tc.name, func(t *testing.T) {
			rep := tc.rep()
			if rep.Status != tc.wantStatus || rep.ExitCode != tc.wantCode {
				t.Errorf("status %s/%d, want %s/%d", rep.Status, rep.ExitCode, tc.wantStatus, tc.wantCode)
			}
			if got := checkSummary(rep); !slices.Equal(got, tc.wantChecks) {
				t.Errorf("checks\n got  %v\n want %v", got, tc.wantChecks)
			}
			if rep.Node == "" {
				t.Errorf("report names no node")
			}
			fmt.Fprintf(&all, "## %s (exit %d)\n", tc.name, rep.ExitCode)
			renderChecks(&all, rep)
			fmt.Fprintln(&all)
		})
	}
	golden(t, "nodecheck.golden", all.Bytes())
}

func TestFinishPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name     string
		codes    []int
		wantCode int
	}{
		{"no checks", nil, checkOK},
		{"all ok", []int{checkOK, checkOK}, checkOK},
		{"unknown over ok", []int{checkOK, checkUnknown, checkOK}, checkUnknown},
		{"warning over unknown", []int{checkUnknown, checkWarning}, checkWarning},
		{"warning over unknown, reversed", []int{checkWarning, checkUnknown}, checkWarning},
		{"critical over warning", []int{checkWarning, checkCritical}, checkCritical},
		{"critical over unknown", []int{checkCritical, checkUnknown}, checkCritical},
		{"critical over everything", []int{checkOK, checkUnknown, checkCritical, checkWarning, checkOK}, checkCritical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := checkReport{Node: "node1"}
			for i, c := range tc.codes {
				rep.Checks = append(rep.Checks, checkResult{Name: fmt.Sprint("c", i), Code: c, Status: checkNames[c]})
			}
			got := finish(rep)
			if got.ExitCode != tc.wantCode || got.Status != checkNames[tc.wantCode] {
				t.Errorf("finish(%v) = %s/%d, want %s/%d", tc.codes, got.Status, got.ExitCode, checkNames[tc.wantCode], tc.wantCode)
			}
			if len(got.Checks) != len(tc.codes) {
				t.Errorf("finish changed the checks: %v", got.Checks)
			}
		})
	}
}
