package node

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestMetricsDataDirSpace(t *testing.T) {
	data := newMetrics(&Node{cfg: &config.Config{Cluster: "c", Name: "n1", Postgres: &config.PostgresConfig{}}})
	data.observe(&pb.NodeReport{Postgres: &pb.PostgresStatus{FreeBytes: 1000, TotalBytes: 4000, DiskFull: true, PendingRestart: []string{"max_connections", "shared_buffers"}}}, 0)
	got := series(t, data.reg)
	for name, want := range map[string]float64{"hasidecar_data_dir_free_bytes": 1000, "hasidecar_data_dir_total_bytes": 4000, "hasidecar_disk_full": 1, "hasidecar_postgres_pending_restart": 2} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	witness := newMetrics(&Node{cfg: &config.Config{Cluster: "c", Name: "w"}})
	witness.observe(&pb.NodeReport{}, 0)
	if _, ok := series(t, witness.reg)["hasidecar_data_dir_free_bytes"]; ok {
		t.Error("a witness exports hasidecar_data_dir_free_bytes")
	}
}

// series gathers reg's gauge and counter values by name and labels
// ("name{k=v,...}").
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if l.GetName() != "cluster" && l.GetName() != "node" {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestMetricsStateAndLag(t *testing.T) {
	now := time.Now()
	cfg := &config.Config{Cluster: "c", Name: "n1", Postgres: &config.PostgresConfig{}}

	primary := newMetrics(&Node{cfg: cfg})
	primary.observe(&pb.NodeReport{Postgres: &pb.PostgresStatus{Running: true, CurrentLsn: 5000, Replication: []*pb.ReplicationRow{
		{ApplicationName: "n2", ReplayLsn: 4000, ReplayLagMs: 1500},
		{ApplicationName: "n3", ReplayLsn: 5000},
		{ApplicationName: "hasidecar_gate", ReplayLsn: 5000},
	}, Slots: []*pb.SlotStatus{{Name: "hasidecar_n2", Active: true, RetainedBytes: 1000}, {Name: "hasidecar_n4", RetainedBytes: 3 << 20}}}}, 4800)
	lease := &pb.Lease{HolderId: 1, DurationMs: 4000, Serial: 7}
	primary.observeState(&pb.ClusterState{Term: 4}, "Leader", lease, now.Add(-time.Second), now)
	primary.observePromote("failover")
	primary.observePromote("manual")
	primary.observePromote("switchover")
	want := map[string]float64{
		"hasidecar_voting_term":                            4,
		"hasidecar_raft_state{state=leader}":               1,
		"hasidecar_raft_state{state=follower}":             0,
		"hasidecar_lease_remaining_seconds":                3,
		"hasidecar_standby_lag_bytes{standby=n2}":          1000,
		"hasidecar_standby_lag_bytes{standby=n3}":          0,
		"hasidecar_standby_lag_seconds{standby=n2}":        1.5,
		"hasidecar_standby_lag_seconds{standby=n3}":        0,
		"hasidecar_slot_retained_bytes{slot=hasidecar_n2}": 1000,
		"hasidecar_slot_retained_bytes{slot=hasidecar_n4}": 3 << 20,
		"hasidecar_replication_lag_bytes":                  0,
		"hasidecar_failovers_total":                        2,
		"hasidecar_switchovers_total":                      1,
		"hasidecar_postgres_primary":                       1,
	}
	got := series(t, primary.reg)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("primary: %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["hasidecar_standby_lag_bytes{standby=hasidecar_gate}"]; ok {
		t.Error("the lease gate is exported as a standby")
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no Go process metrics (go_goroutines)")
	}

	standby := newMetrics(&Node{cfg: cfg})
	standby.observe(&pb.NodeReport{Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, ReplayLsn: 4500, ReplayLagMs: 1500}}, 4800)
	standby.observeState(&pb.ClusterState{Term: 4}, "Follower", &pb.Lease{HolderId: 1, DurationMs: 4000, Released: true}, now, now)
	got = series(t, standby.reg)
	for k, v := range map[string]float64{
		"hasidecar_replication_lag_bytes":      300,
		"hasidecar_replication_lag_seconds":    1.5,
		"hasidecar_lease_remaining_seconds":    0, // released
		"hasidecar_raft_state{state=follower}": 1,
		"hasidecar_postgres_primary":           0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("standby: %s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
