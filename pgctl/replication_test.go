package pgctl

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const replPassword = `pa:ss\wo'rd *x`

// replConninfo is a TCP replication conninfo to c, password in passfile.
func replConninfo(c *Controller, appName, passfile string) Conninfo {
	kv := Conninfo{"host": "127.0.0.1", "port": strconv.Itoa(c.opts.Port),
		"user": "replicator", "application_name": appName, "connect_timeout": "5"}
	if passfile != "" {
		kv["passfile"] = passfile
	}
	return kv
}

func countRows(ctx context.Context, c *Controller, id int) (int, error) {
	var n int
	err := c.QueryRow(ctx, "SELECT count(*)::int FROM t WHERE id = $1", []any{id}, &n)
	return n, err
}

// cloneStandby makes instance name a streaming standby of src on timeline 1
// (pg_basebackup, recovery settings, standby.signal, start).
func cloneStandby(ctx context.Context, t *testing.T, base, name string, src Conninfo) *Controller {
	t.Helper()
	s := newInstance(t, base, name)
	if err := s.BaseBackup(ctx, src, "", ""); err != nil {
		t.Fatal(err)
	}
	configure(t, s)
	if _, err := s.SetRecovery(ctx, src.String(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetStandbySignal(true); err != nil {
		t.Fatal(err)
	}
	mustStart(t, s)
	waitStreaming(t, s, 1)
	return s
}

func waitStreaming(t *testing.T, c *Controller, tli uint32) *Status {
	t.Helper()
	var st *Status
	waitFor(t, 30*time.Second, "standby streaming on timeline "+strconv.Itoa(int(tli)), func() (bool, string) {
		var err error
		st, err = c.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return st.InRecovery && st.WalReceiverStatus == "streaming" && st.Timeline == tli && st.ReceiveLSN > 0,
			fmt.Sprintf("%+v", st)
	})
	return st
}

func waitRow(t *testing.T, c *Controller, id int) {
	t.Helper()
	waitFor(t, 20*time.Second, "row "+strconv.Itoa(id)+" on the standby", func() (bool, string) {
		n, err := countRows(context.Background(), c, id)
		return n == 1, fmt.Sprint(n, err)
	})
}

// TestReplicationFailoverRewind: primary n1, standby n2 cloned with a slot;
// n2 is promoted, n1 diverges, stops, is rewound and follows n2.
func TestReplicationFailoverRewind(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	passfile := filepath.Join(base, "pgpass")
	if err := WritePassfile(passfile, "postgres", []PassEntry{{Host: "127.0.0.1", Port: "*", Database: "*", User: "replicator", Password: replPassword}}); err != nil {
		t.Fatal(err)
	}

	// Primary n1.
	n1 := newInstance(t, base, "n1")
	fromTemplate(t, n1)
	mustStart(t, n1)
	if err := n1.EnsureRole(ctx, "replicator", true, replPassword); err != nil {
		t.Fatal(err)
	}
	var verifier string
	if err := n1.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'", nil, &verifier); err != nil {
		t.Fatal(err)
	}
	if err := n1.EnsureRole(ctx, "replicator", true, replPassword); err != nil {
		t.Fatal(err)
	}
	var verifier2 string
	if err := n1.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'replicator'", nil, &verifier2); err != nil || verifier2 != verifier {
		t.Fatalf("EnsureRole with the same password rewrote it (%v)", err)
	}
	conn, err := pgConnect(ctx, n1, "replicator", replPassword)
	if err != nil {
		t.Fatalf("login with the SCRAM verifier made by EnsureRole: %v", err)
	}
	conn.Close(ctx)
	if conn, err := pgConnect(ctx, n1, "replicator", "wrong"); err == nil {
		conn.Close(ctx)
		t.Fatal("wrong password accepted")
	}
	for i := 0; i < 2; i++ {
		created, err := n1.EnsureSlot(ctx, "n2")
		if err != nil || created != (i == 0) {
			t.Fatalf("EnsureSlot #%d: created=%v err=%v", i, created, err)
		}
	}
	if _, err := n1.EnsureSlot(ctx, "Bad-Name"); err == nil {
		t.Fatal("bad slot name accepted")
	}
	if err := n1.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	if err := n1.Exec(ctx, "INSERT INTO t VALUES (1, 'before clone')"); err != nil {
		t.Fatal(err)
	}

	// Standby n2: clone, configure, start.
	n2 := newInstance(t, base, "n2")
	start := time.Now()
	if err := n2.BaseBackup(ctx, replConninfo(n1, "n2", ""), "n2", passfile); err != nil {
		t.Fatal(err)
	}
	t.Logf("base backup took %s", time.Since(start))
	configure(t, n2)
	if _, err := n2.SetRecovery(ctx, replConninfo(n1, "n2", passfile).String(), "n2"); err != nil {
		t.Fatal(err)
	}
	if changed, err := n2.SetRecovery(ctx, replConninfo(n1, "n2", passfile).String(), "n2"); err != nil || changed {
		t.Fatalf("SetRecovery again: changed=%v err=%v", changed, err)
	}
	if changed, err := n2.SetStandbySignal(true); err != nil || !changed || !n2.IsStandbySignal() {
		t.Fatalf("SetStandbySignal: %v %v", changed, err)
	}
	mustStart(t, n2)
	st := waitStreaming(t, n2, 1)
	n1st, err := n1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.SystemIdentifier != n1st.SystemIdentifier {
		t.Fatalf("system identifiers differ: %d vs %d", st.SystemIdentifier, n1st.SystemIdentifier)
	}
	if strings.Contains(st.UpstreamConninfo, replPassword) || !strings.Contains(st.UpstreamConninfo, "replicator") {
		t.Errorf("upstream conninfo %q", st.UpstreamConninfo)
	}
	if err := n1.Exec(ctx, "INSERT INTO t VALUES (2, 'streamed')"); err != nil {
		t.Fatal(err)
	}
	waitRow(t, n2, 2)
	waitFor(t, 10*time.Second, "n2 in pg_stat_replication of n1", func() (bool, string) {
		st, err := n1.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, r := range st.Replication {
			if r.ApplicationName == "n2" && r.SlotName == "n2" && r.State == "streaming" && r.ClientAddr == "127.0.0.1" && r.FlushLSN > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Replication)
	})
	slots, err := n1.ListSlots(ctx)
	if err != nil || len(slots) != 1 || slots[0].Name != "n2" || !slots[0].Active || slots[0].RestartLSN == 0 || slots[0].WalStatus == "" {
		t.Fatalf("slots on n1: %+v %v", slots, err)
	}
	// The status sample's slots (the primary's) and the standby's none.
	if st, err := n1.Status(ctx); err != nil || len(st.Slots) != 1 || st.Slots[0].Name != "n2" || !st.Slots[0].Active || st.Slots[0].WalStatus == "" || st.Slots[0].RetainedBytes < 0 {
		t.Fatalf("status slots on n1: %+v %v", st.Slots, err)
	}
	if st, err := n2.Status(ctx); err != nil || len(st.Slots) != 0 || !st.InRecovery || st.ReplayLSN == 0 {
		t.Fatalf("status on n2: %+v %v", st, err)
	}

	// Failover: promote n2.
	start = time.Now()
	if err := n2.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("promote took %s", time.Since(start))
	st, err = n2.Status(ctx)
	if err != nil || st.InRecovery || st.Timeline != 2 {
		t.Fatalf("after promote: %+v %v", st, err)
	}
	// pg_control shows the new timeline only after a checkpoint, which the
	// sidecar runs in the background after promoting.
	if cd, err := n2.ControlData(ctx); err != nil || cd.State != "in production" {
		t.Fatalf("control data after promote: %+v %v", cd, err)
	}
	if err := n2.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if cd, err := n2.ControlData(ctx); err != nil || cd.TimelineID != 2 {
		t.Fatalf("control data after the checkpoint: %+v %v", cd, err)
	}
	if err := n2.Promote(ctx); err != nil {
		t.Fatalf("second Promote: %v", err)
	}
	if h, err := n2.TimelineHistory(ctx, 2); err != nil || !strings.HasPrefix(h, "1\t") {
		t.Fatalf("timeline 2 history %q, %v", h, err)
	}
	if h, err := n2.TimelineHistory(ctx, 1); err != nil || h != "" {
		t.Fatalf("timeline 1 history %q, %v", h, err)
	}
	if _, err := n2.SetRecovery(ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := n2.Exec(ctx, "INSERT INTO t VALUES (3, 'new timeline')"); err != nil {
		t.Fatal(err)
	}
	// The old primary diverges (a write n2 never sees), then stops.
	if err := n1.Exec(ctx, "INSERT INTO t VALUES (100, 'lost on the old timeline')"); err != nil {
		t.Fatal(err)
	}
	if err := n1.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}

	// Rewind n1 from n2 over n2's unix socket (peer auth as postgres).
	if err := n1.Rewind(ctx, Conninfo{"host": "127.0.0.1", "port": "1", "password": "x"}, ""); err == nil || strings.Contains(err.Error(), "password=x") {
		t.Fatalf("Rewind with a password in the conninfo: %v", err)
	}
	src := Conninfo{"host": n2.opts.SocketDir, "port": strconv.Itoa(n2.opts.Port), "user": "postgres", "dbname": "postgres"}
	start = time.Now()
	if err := n1.Rewind(ctx, src, ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("rewind took %s", time.Since(start))
	if !n1.IsStandbySignal() {
		t.Fatal("Rewind did not set standby.signal")
	}
	if !isFile(n1.opts.DataDir + ".pg_control.before-rewind") {
		t.Fatal("no pg_control backup")
	}
	configure(t, n1)
	if created, err := n2.EnsureSlot(ctx, "n1"); err != nil || !created {
		t.Fatalf("EnsureSlot n1 on n2: %v %v", created, err)
	}
	if _, err := n1.SetRecovery(ctx, replConninfo(n2, "n1", passfile).String(), "n1"); err != nil {
		t.Fatal(err)
	}
	mustStart(t, n1)
	waitStreaming(t, n1, 2)
	if err := n2.Exec(ctx, "INSERT INTO t VALUES (4, 'after rejoin')"); err != nil {
		t.Fatal(err)
	}
	waitRow(t, n1, 4)
	waitRow(t, n1, 3)
	if n, err := countRows(ctx, n1, 100); err != nil || n != 0 {
		t.Fatalf("the diverged row survived the rewind: %d %v", n, err)
	}

	// Rewinding a running server is refused; a rewind from a server on the
	// same timeline is reported as impossible.
	if err := n1.Rewind(ctx, src, ""); !errors.Is(err, ErrRunning) {
		t.Fatalf("Rewind while running: %v", err)
	}

	// Slots: dropping an active one terminates its walsender.
	if dropped, err := n2.DropSlot(ctx, "n2"); err != nil || dropped {
		t.Fatalf("DropSlot of a missing slot: %v %v", dropped, err)
	}
	if dropped, err := n2.DropSlot(ctx, "n1"); err != nil || !dropped {
		t.Fatalf("DropSlot of the active slot: %v %v", dropped, err)
	}
	if slots, err := n2.ListSlots(ctx); err != nil || len(slots) != 0 {
		t.Fatalf("slots after drop: %+v %v", slots, err)
	}

	// TerminateBackends on n2 ends a client session, not ours.
	client, err := pgConnect(ctx, n2, "replicator", replPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	if err := n2.TerminateBackends(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("client session survived TerminateBackends")
	}
	var one int
	if err := n2.QueryRow(ctx, "SELECT 1", nil, &one); err != nil {
		t.Fatalf("own connection after TerminateBackends: %v", err)
	}
}

// TestRewindSameTimeline: a standby stopped while still following its
// primary shares the primary's timeline; Rewind says so with
// ErrRewindImpossible and changes nothing.
func TestRewindSameTimeline(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	n1 := newInstance(t, base, "n1")
	fromTemplate(t, n1)
	mustStart(t, n1)
	n2 := newInstance(t, base, "n2")
	src := Conninfo{"host": n1.opts.SocketDir, "port": strconv.Itoa(n1.opts.Port), "user": "postgres"}
	if err := n2.BaseBackup(ctx, src, "", ""); err != nil {
		t.Fatal(err)
	}
	configure(t, n2)
	if _, err := n2.SetStandbySignal(true); err != nil {
		t.Fatal(err)
	}
	mustStart(t, n2)
	if err := n2.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	err := n2.Rewind(ctx, src, "")
	if !errors.Is(err, ErrRewindImpossible) || !strings.Contains(err.Error(), "same timeline") {
		t.Fatalf("Rewind on the same timeline: %v", err)
	}
	t.Logf("error: %v", err)
}

// TestStandbyTimelineUpstreamGone: a standby that followed its upstream
// onto a new timeline still reports that timeline once the upstream is
// gone and its WAL receiver with it — pg_control's timelines lag until the
// next restartpoint — so that a failover can choose it (a stale answer kept
// the chaos test's cluster without a primary after a switchover followed by
// the new primary's death).
func TestStandbyTimelineUpstreamGone(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	n1 := newInstance(t, base, "n1")
	fromTemplate(t, n1)
	mustStart(t, n1)
	var standbys []*Controller
	for _, name := range []string{"n2", "n3"} {
		standbys = append(standbys, cloneStandby(ctx, t, base, name, localSource(n1, "")))
	}
	n2, n3 := standbys[0], standbys[1]
	if err := n1.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if err := n2.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n2.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.SetRecovery(ctx, localSource(n2, "").String(), ""); err != nil {
		t.Fatal(err)
	}
	if err := n3.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, n3, 2)
	if err := n2.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'timeline 2')"); err != nil {
		t.Fatal(err)
	}
	waitRow(t, n3, 1)
	if err := n2.Stop(ctx, StopImmediate); err != nil {
		t.Fatal(err)
	}
	var ckptTLI int32
	if err := n3.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()", nil, &ckptTLI); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "n3 without a WAL receiver", func() (bool, string) {
		st, err := n3.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		if st.WalReceiverStatus != "" {
			return false, "WAL receiver " + st.WalReceiverStatus
		}
		if !st.InRecovery || st.Timeline != 2 {
			t.Fatalf("n3 with its upstream gone: in recovery %v, timeline %d, want 2 (pg_control's checkpoint is on timeline %d)", st.InRecovery, st.Timeline, ckptTLI)
		}
		return true, ""
	})
	t.Logf("n3 reports timeline 2 while pg_control's last restartpoint is on timeline %d", ckptTLI)
}

// TestSyncNamesSetBeforePromote: synchronous_standby_names written into the
// managed config and reloaded while the instance is still a standby (which
// ignores it) is in effect from the promotion on: the new primary's first
// commit waits until the named standby streams from it and flushed it. The
// sidecar relies on this (node/keeper/sync.go): it writes the set before
// pg_promote. The reload here comes right before pg_promote, the tightest
// order; the sidecar's standbys have it loaded long before.
// localSource is a connection to c over its socket, as the superuser.
// (app "": no application_name).
func localSource(c *Controller, app string) Conninfo {
	ci := Conninfo{"host": c.opts.SocketDir, "port": strconv.Itoa(c.opts.Port), "user": "postgres", "dbname": "postgres"}
	if app != "" {
		ci["application_name"] = app
	}
	return ci
}

func TestSyncNamesSetBeforePromote(t *testing.T) {
	needPG(t)
	ctx := ctxT(t)
	base := baseDir(t)
	n1 := newInstance(t, base, "n1")
	fromTemplate(t, n1)
	mustStart(t, n1)
	var standbys []*Controller
	for _, name := range []string{"n2", "n3"} {
		standbys = append(standbys, cloneStandby(ctx, t, base, name, localSource(n1, name)))
	}
	n2, n3 := standbys[0], standbys[1]
	if err := n1.Stop(ctx, StopImmediate); err != nil {
		t.Fatal(err)
	}

	// n2: the set, a reload, pg_promote at once.
	s := ManagedSettings(n2.Options())
	s["fsync"], s["shared_buffers"], s["max_connections"] = "off", "16MB", "30"
	s["synchronous_standby_names"] = `ANY 1 ("n3")`
	if changed, err := n2.WriteManagedConfig(ctx, s); err != nil || !changed {
		t.Fatalf("write the managed config with the synchronous set: changed=%v err=%v", changed, err)
	}
	if err := n2.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n2.Promote(ctx); err != nil {
		t.Fatal(err)
	}

	// The first commit waits: n3 still follows the dead n1.
	cfg, err := n2.ConnConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'first commit after the promotion')")
		done <- err
	}()
	waitFor(t, 10*time.Second, "the first commit on n2 waiting for synchronous replication", func() (bool, string) {
		var n int
		err := n2.QueryRow(ctx, "SELECT count(*)::int FROM pg_stat_activity WHERE wait_event = 'SyncRep'", nil, &n)
		return err == nil && n == 1, fmt.Sprint(n, err)
	})
	select {
	case err := <-done:
		t.Fatalf("the commit returned (%v) before any synchronous standby streamed from n2", err)
	case <-time.After(time.Second):
	}

	// n3 follows n2: the commit returns, and n3 has it.
	if _, err := n3.SetRecovery(ctx, localSource(n2, "n3").String(), ""); err != nil {
		t.Fatal(err)
	}
	if err := n3.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the commit after n3 followed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the commit still waits 30 s after n3 was pointed at n2")
	}
	var flushed string
	if err := n2.QueryRow(ctx, "SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = 'n3' AND sync_state = 'quorum'", nil, &flushed); err != nil {
		t.Fatalf("n3 as a quorum standby of n2: %v", err)
	}
	waitRow(t, n3, 1)
	t.Logf("the commit waited for n3, which flushed up to %s", flushed)
}
