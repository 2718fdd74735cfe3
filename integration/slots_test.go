package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
)

// TestSlotRetention (issue: slots that cannot fill the disk): a standby
// whose host stays down past slot_retention loses its slot on the primary
// (so pg_wal stops growing for it), is marked needs re-clone with an event,
// shows so in cluster show, and when it returns sets its data directory
// aside, clones afresh, clears the mark and streams again with what was
// written while it was down.
func TestSlotRetention(t *testing.T) {
	needPostgres(t)
	const retention = 6 * time.Second
	c := newCluster(t, clusterOpts{standbys: 2, witness: true, tune: func(cfg *config.Config) {
		cfg.SlotRetention = config.Duration(retention)
	}})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	primary := primaryName(v)
	victim := c.node("pg3")
	data := victim.Config.Postgres.DataDir
	c.exec(primary, "CREATE TABLE slot_retention (id int PRIMARY KEY)")
	c.exec(primary, "INSERT INTO slot_retention VALUES (1)")
	c.waitCaughtUp(primary, "pg2", "pg3")

	killed := time.Now()
	c.lab.KillHost(victim)
	c.exec(primary, "INSERT INTO slot_retention VALUES (2)")
	ev := c.awaitEvents("witness", fsm.EventNeedsReclone, 60*time.Second)
	t.Logf("needs_reclone %.1fs after pg3's host was killed (slot_retention %s): %s", time.Since(killed).Seconds(), retention, ev[0].Details)
	if len(ev) != 1 || ev[0].NodeName != "pg3" || !strings.Contains(ev[0].Details, "slot_retention") {
		t.Fatalf("needs_reclone events %v: want one about pg3 naming slot_retention", ev)
	}
	eventually(t, 15*time.Second, "pg3's slot dropped on "+primary, func() string {
		n, err := c.queryInt(primary, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'hasidecar_pg3'")
		switch {
		case err != nil:
			return err.Error()
		case n != 0:
			return "the slot is still there"
		}
		return ""
	})
	if n, err := c.queryInt(primary, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'hasidecar_pg2' AND active"); err != nil || n != 1 {
		t.Fatalf("pg2's slot: %d active (%v), want 1: only the down standby loses its slot", n, err)
	}
	sj, err := c.showJSON("witness")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range sj.Nodes {
		if row.Name == "pg3" && !strings.HasPrefix(row.Status, "needs re-clone") {
			t.Fatalf("cluster show: pg3 is %q, want needs re-clone", row.Status)
		}
	}

	c.start("pg3")
	c.followsOn("pg3", primary, 1, 120*time.Second)
	if ev := c.awaitEvents("witness", fsm.EventRecloned, 30*time.Second); len(ev) != 1 || ev[0].NodeName != "pg3" {
		t.Fatalf("node_recloned events %v", ev)
	}
	aside := c.events("witness", fsm.EventDataDirSetAside)
	if len(aside) != 1 || aside[0].NodeName != "pg3" || !strings.Contains(aside[0].Details, "needs a re-clone") {
		t.Fatalf("data_dir_set_aside events %v: want one about pg3's re-clone", aside)
	}
	if old, _ := filepath.Glob(data + ".old-*"); len(old) != 1 {
		t.Fatalf("set-aside copies %v: want pg3's old data directory kept once", old)
	}
	if n, err := c.queryInt("pg3", "SELECT count(*) FROM slot_retention"); err != nil || n != 2 {
		t.Fatalf("pg3 after the re-clone holds %d rows (%v), want 2 (one written while it was down)", n, err)
	}
	v, err = c.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range v.Nodes {
		if strings.Contains(row.Status, "needs re-clone") {
			t.Fatalf("%s is still marked: %s", row.Name, row.Status)
		}
	}
	if n, err := c.queryInt(primary, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'hasidecar_pg3' AND active"); err != nil || n != 1 {
		t.Fatalf("pg3's new slot: %d active (%v), want 1", n, err)
	}
}
