package node

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// gauges gathers reg's gauges by name (one series each).
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				out[mf.GetName()] = g.GetValue()
			}
		}
	}
	return out
}

func TestMetricsDataDirSpace(t *testing.T) {
	data := newMetrics(&Node{cfg: &config.Config{Cluster: "c", Name: "n1", Postgres: &config.PostgresConfig{}}})
	data.observe(&pb.NodeReport{Postgres: &pb.PostgresStatus{FreeBytes: 1000, TotalBytes: 4000, DiskFull: true}})
	got := gauges(t, data.reg)
	for name, want := range map[string]float64{"hasidecar_data_dir_free_bytes": 1000, "hasidecar_data_dir_total_bytes": 4000, "hasidecar_disk_full": 1} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	witness := newMetrics(&Node{cfg: &config.Config{Cluster: "c", Name: "w"}})
	witness.observe(&pb.NodeReport{})
	if _, ok := gauges(t, witness.reg)["hasidecar_data_dir_free_bytes"]; ok {
		t.Error("a witness exports hasidecar_data_dir_free_bytes")
	}
}
