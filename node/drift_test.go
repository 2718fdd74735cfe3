package node

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestWarnDrift: a cluster-wide key the node's file gives with another
// value than the replicated one is warned about once, again when it
// changes, never for keys the file does not give.
func TestWarnDrift(t *testing.T) {
	var buf bytes.Buffer
	cfg := &config.Config{Synchronous: true}
	cfg.Timing.Lease = config.Duration(6e9)
	n := &Node{cfg: cfg, logger: hclog.New(&hclog.LoggerOptions{Output: &buf}), fileKeys: map[string]bool{"timing.lease": true}}
	st := &pb.ClusterState{Settings: &pb.Settings{LeaseMs: 4000}} // synchronous differs too, but the file does not give it
	w := n.warnDrift(st, "")
	if w != "timing.lease: the file says 6s, the cluster 4s" {
		t.Fatalf("warned %q", w)
	}
	if got := strings.Count(buf.String(), "differ from the cluster's configuration"); got != 1 {
		t.Fatalf("%d warnings: %s", got, buf.String())
	}
	n.warnDrift(st, w)
	if got := strings.Count(buf.String(), "differ from the cluster's configuration"); got != 1 {
		t.Errorf("warned again with nothing changed: %s", buf.String())
	}
	st.Settings.LeaseMs = 6000
	if w := n.warnDrift(st, w); w != "" {
		t.Errorf("no drift left, still %q", w)
	}
}
