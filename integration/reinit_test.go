package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
)

// TestReinit (issue 13's `reinit`): an operator clones a standby afresh.
// Refused with its reason and nothing changed: the primary, a witness, an
// unknown node, and no confirmation (no terminal, no --yes); a dry run
// changes nothing. Then `reinit --node pg2 --yes` waits while pg2's keeper
// stops its Postgres, sets its data directory aside (kept) and clones:
// pg2 streams again with every row, including one written meanwhile, and
// no promotion happened.
func TestReinit(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 1, witness: true})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	primary := primaryName(v)
	if primary != "pg1" {
		t.Fatalf("primary %s, want pg1", primary)
	}
	term := v.Term
	addr := c.node("witness").GRPCAddr()
	data := c.node("pg2").Config.Postgres.DataDir
	c.exec(primary, "CREATE TABLE reinit (id int PRIMARY KEY)")
	c.exec(primary, "INSERT INTO reinit VALUES (1)")
	c.waitCaughtUp(primary, "pg2")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node", "pg1", "--yes"}, `"pg1" is the primary`},
		{[]string{"--node", "witness", "--yes"}, "is a witness"},
		{[]string{"--node", "nosuch", "--yes"}, `no node named "nosuch"`},
		{[]string{"--node", "pg2"}, "confirm with --yes"},
		{[]string{}, "--node NAME"},
	} {
		out, errOut, code := c.cli(append([]string{"reinit", "--addr", addr}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Fatalf("reinit %v: exit %d, stderr %q (stdout %q): want a refusal naming %q", tc.args, code, errOut, out, tc.want)
		}
	}
	out, errOut, code := c.cli("reinit", "--addr", addr, "--node", "pg2", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run") {
		t.Fatalf("reinit --dry-run: exit %d, %q %q", code, out, errOut)
	}
	if ev := c.events("witness", fsm.EventNeedsReclone); len(ev) != 0 {
		t.Fatalf("after the refusals and the dry run: needs_reclone events %v, want none", ev)
	}

	// A row written while pg2 re-clones must reach it too.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(500 * time.Millisecond)
		c.exec(primary, "INSERT INTO reinit VALUES (2)")
	}()
	began := time.Now()
	out, errOut, code = c.cli("reinit", "--addr", addr, "--node", "pg2", "--yes", "--timeout", "80s")
	<-done
	t.Logf("reinit took %.1fs:\n%s", time.Since(began).Seconds(), out)
	if code != 0 || !strings.Contains(out, "pg2 cloned afresh and streams again") {
		t.Fatalf("reinit: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	ev := c.events("witness", fsm.EventNeedsReclone)
	if len(ev) != 1 || ev[0].NodeName != "pg2" || !strings.Contains(ev[0].Details, "hasidecar reinit") {
		t.Fatalf("needs_reclone events %v: want one about pg2 naming hasidecar reinit", ev)
	}
	if ev := c.events("witness", fsm.EventRecloned); len(ev) != 1 || ev[0].NodeName != "pg2" {
		t.Fatalf("recloned events %v: want one about pg2", ev)
	}
	if old, _ := filepath.Glob(data + ".old-*"); len(old) != 1 {
		t.Fatalf("set-aside copies %v: want pg2's old data directory kept once", old)
	}
	c.followsOn("pg2", primary, 1, 30*time.Second)
	eventually(t, 15*time.Second, "pg2 holding both rows", func() string {
		n, err := c.queryInt("pg2", "SELECT count(*) FROM reinit")
		if err != nil {
			return err.Error()
		}
		if n != 2 {
			return fmt.Sprintf("%d rows", n)
		}
		return ""
	})
	v, err := c.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	if v.Term != term || primaryName(v) != primary {
		t.Fatalf("after the reinit: term %d primary %s, want term %d primary %s (no promotion)", v.Term, primaryName(v), term, primary)
	}
	for _, row := range v.Nodes {
		if strings.Contains(row.Status, "needs re-clone") {
			t.Fatalf("%s is still marked: %s", row.Name, row.Status)
		}
	}
}

// TestMaintenance (issue 13's `node maintenance`): a standby in
// maintenance is left alone — its Postgres, killed, stays down, where a
// managed standby's comes back within a monitor interval — and shows so in
// cluster show; the primary is refused; `maintenance off` and the keeper
// starts it again and it streams.
func TestMaintenance(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 1, witness: true})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	primary := primaryName(v)
	addr := c.node("witness").GRPCAddr()
	if _, errOut, code := c.cli("node", "maintenance", "on", "--addr", addr, "--node", primary); code == 0 || !strings.Contains(errOut, "is the primary") {
		t.Fatalf("maintenance on the primary: exit %d, %q: want a refusal", code, errOut)
	}
	out, errOut, code := c.cli("node", "maintenance", "on", "--addr", addr, "--node", "pg2", "--reason", "disk swap")
	if code != 0 || !strings.Contains(out, "pg2 is in maintenance") {
		t.Fatalf("maintenance on: exit %d, %q %q", code, out, errOut)
	}
	if ev := c.events("witness", fsm.EventMaintenance); len(ev) != 1 || !strings.Contains(ev[0].Details, "disk swap") {
		t.Fatalf("node_maintenance events %v", ev)
	}
	c.lab.KillPostgres(c.node("pg2"))
	// Left alone: still down after five monitor intervals.
	time.Sleep(5 * c.node("pg2").Config.Timing.MonitorInterval.D())
	v, err := c.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range v.Nodes {
		if row.Name != "pg2" {
			continue
		}
		if !row.Maintenance || !strings.HasPrefix(row.Status, "maintenance, ") || row.Postgres.GetRunning() {
			t.Fatalf("pg2 in maintenance after its Postgres was killed: maintenance %v, status %q, running %v: want left down", row.Maintenance, row.Status, row.Postgres.GetRunning())
		}
	}
	out, errOut, code = c.cli("node", "maintenance", "off", "--addr", addr, "--node", "pg2")
	if code != 0 || !strings.Contains(out, "pg2 is out of maintenance") {
		t.Fatalf("maintenance off: exit %d, %q %q", code, out, errOut)
	}
	c.followsOn("pg2", primary, 1, 60*time.Second)
}
