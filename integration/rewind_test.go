package integration

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
)

// TestRejoinByRewind: after a failover the old primary, restarted, rejoins
// by pg_rewind, not by a fresh clone. It used to re-clone every time:
// pgx sent the upstream conninfo's keepalives_* keys to the new primary as
// run-time parameters, the checkpoint before pg_rewind was refused, and
// pg_rewind saw "same timeline" in the stale pg_control.
func TestRejoinByRewind(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true})
	acked := s.caughtUpAcks()
	old := s.primary
	s.lab.KillHost(s.node(old))
	np := s.waitNewPrimary(old, 30*time.Second)
	t.Logf("%s promoted after the host of %s died", np, old)
	time.Sleep(time.Second) // the writer commits on the new timeline

	s.start(old)
	s.followsOn(old, np, 2, 90*time.Second)
	var rewound bool
	for _, ev := range s.events(np, fsm.EventNodeRewind) {
		if ev.NodeName != old {
			continue
		}
		if !ev.Ok {
			t.Fatalf("pg_rewind failed on %s: %s", old, ev.Details)
		}
		rewound = true
	}
	if !rewound {
		t.Fatalf("no node_rewind event for %s", old)
	}
	// The checkpoint on the source before pg_rewind went through (it is
	// what makes pg_rewind see the new timeline right after a promotion).
	if s.logContains(old, "the rewind source") {
		t.Errorf("%s could not checkpoint the rewind source (see its log)", old)
	}
	if ev := s.events(np, fsm.EventDataDirSetAside); len(ev) != 0 {
		t.Fatalf("data directory set aside: %v", ev)
	}
	dataDir := s.node(old).Config.Postgres.DataDir
	if copies, err := filepath.Glob(dataDir + ".old-*"); err != nil || len(copies) != 0 {
		t.Fatalf("set-aside copies next to %s: %v %v", dataDir, copies, err)
	}
	s.assertHas(old, acked)
	s.probe.check(t)
}
