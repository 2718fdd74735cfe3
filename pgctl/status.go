package pgctl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Status is one snapshot of the local instance.
type Status struct {
	Running          bool // a postmaster (ours or foreign) runs on DataDir
	InRecovery       bool
	Timeline         uint32
	SystemIdentifier uint64
	// On a primary: CurrentLSN = pg_current_wal_lsn() (written),
	// FlushLSN = pg_current_wal_flush_lsn(). On a standby: ReceiveLSN =
	// pg_last_wal_receive_lsn() (flushed to the standby's disk), ReplayLSN
	// = pg_last_wal_replay_lsn(), FlushLSN = ReceiveLSN, CurrentLSN = the
	// larger of the two.
	CurrentLSN, FlushLSN, ReceiveLSN, ReplayLSN uint64
	WalReceiverStatus                           string // pg_stat_wal_receiver.status ("streaming", ...); "" when none
	UpstreamConninfo                            string // pg_stat_wal_receiver.conninfo (password obfuscated by Postgres)
	// ReplayLagMillis: 0 when everything received is replayed, else the age
	// of the last replayed transaction.
	ReplayLagMillis int64
	Connections     int32 // client backends
	ArchiveReady    int32 // pg_wal/archive_status/*.ready
	Replication     []ReplicationRow
	Slots           []SlotStatus // on a primary only
	PostmasterStart time.Time
	// PendingRestart: settings changed in the configuration files that
	// take effect only after a restart (pg_settings.pending_restart).
	PendingRestart []string
}

// SlotStatus is a physical replication slot of a primary and the WAL it
// holds back (pg_current_wal_lsn() - restart_lsn).
type SlotStatus struct {
	Name          string
	Active        bool
	WalStatus     string
	RetainedBytes int64
}

// ReplicationRow is one row of pg_stat_replication (with the slot in use).
type ReplicationRow struct {
	ApplicationName, ClientAddr, State     string
	SentLSN, WriteLSN, FlushLSN, ReplayLSN uint64
	SyncState, SlotName                    string
	ReplayLagMillis                        int64 // replay_lag (0: none measured)
}

// Status queries the local instance. When no postmaster runs it returns a
// Status with Running false and no error. On a query error it returns what
// it has so far together with the error.
func (c *Controller) Status(ctx context.Context) (*Status, error) {
	st := &Status{}
	if !c.Running() && c.ForeignPostmaster() == 0 {
		return st, nil
	}
	st.Running = true
	err := c.withConn(ctx, true, func(conn *pgx.Conn) error {
		*st = Status{Running: true}
		return queryStatus(ctx, conn, st)
	})
	if err != nil {
		return st, fmt.Errorf("querying postgres status: %w", err)
	}
	if st.InRecovery && st.WalReceiverStatus == "" {
		// No WAL receiver (its upstream is gone): pg_control's timelines
		// lag until the next restartpoint, which may never come, so ask the
		// startup process's replay timeline.
		if tli, err := c.cachedReplayTimeline(ctx, st); err == nil {
			st.Timeline = tli
		} else {
			c.log.Debug("replay timeline unknown, using pg_control's", "timeline", st.Timeline, "error", err)
		}
	}
	if n, err := countReady(c.opts.DataDir); err == nil {
		st.ArchiveReady = n
	}
	return st, nil
}

// statusQuery is the whole status sample in one round trip (the reconciler
// takes one every monitor interval on every node): the primary's or the
// standby's positions (each branch only evaluated in its mode), the WAL
// receiver, the replication rows and slots as JSON, and the settings that
// wait for a restart (pg_settings.pending_restart).
const statusQuery = `SELECT m.rec,
	(SELECT system_identifier FROM pg_control_system()),
	pg_postmaster_start_time(),
	(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4,
	CASE WHEN m.rec THEN '' ELSE pg_current_wal_lsn()::text END,
	CASE WHEN m.rec THEN '' ELSE pg_current_wal_flush_lsn()::text END,
	CASE WHEN m.rec THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END,
	CASE WHEN m.rec THEN coalesce(pg_last_wal_receive_lsn()::text, '') ELSE '' END,
	CASE WHEN m.rec THEN coalesce(pg_last_wal_replay_lsn()::text, '') ELSE '' END,
	CASE WHEN NOT m.rec OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
	     ELSE coalesce((extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::int8, 0) END,
	(SELECT timeline_id FROM pg_control_checkpoint()),
	(SELECT min_recovery_end_timeline FROM pg_control_recovery()),
	CASE WHEN m.rec THEN coalesce(w.status, '') ELSE '' END,
	CASE WHEN m.rec THEN coalesce(w.received_tli, 0) ELSE 0 END,
	CASE WHEN m.rec THEN coalesce(w.conninfo, '') ELSE '' END,
	(SELECT coalesce(json_agg(json_build_object(
		'app', coalesce(r.application_name, ''), 'addr', coalesce(host(r.client_addr), ''),
		'state', coalesce(r.state, ''), 'sent', coalesce(r.sent_lsn::text, ''), 'write', coalesce(r.write_lsn::text, ''),
		'flush', coalesce(r.flush_lsn::text, ''), 'replay', coalesce(r.replay_lsn::text, ''), 'sync', coalesce(r.sync_state, ''),
		'slot', coalesce(s.slot_name::text, ''), 'lag', coalesce((extract(epoch FROM r.replay_lag) * 1000)::bigint, 0))
		ORDER BY r.application_name, r.pid), '[]')
		FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid)::text,
	CASE WHEN m.rec THEN '[]' ELSE (SELECT coalesce(json_agg(json_build_object(
		'name', slot_name::text, 'active', active, 'wal', coalesce(wal_status, ''),
		'retained', coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint)
		ORDER BY slot_name), '[]')
		FROM pg_replication_slots WHERE slot_type = 'physical')::text END,
	(SELECT coalesce(array_agg(name::text ORDER BY name), '{}') FROM pg_settings WHERE pending_restart)
FROM (SELECT pg_is_in_recovery() AS rec) m
LEFT JOIN (SELECT status, received_tli, conninfo FROM pg_stat_wal_receiver LIMIT 1) w ON true`

// statusReplRow and statusSlot are the JSON rows of statusQuery.
type statusReplRow struct {
	App, Addr, State, Sent, Write, Flush, Replay, Sync, Slot string
	Lag                                                      int64
}

type statusSlot struct {
	Name     string
	Active   bool
	Wal      string
	Retained int64
}

func queryStatus(ctx context.Context, conn *pgx.Conn, st *Status) error {
	var sysid int64
	var cur, flush, walfile, recv, replay, repl, slots string
	var ckptTLI, minRecTLI, recvTLI int32
	err := conn.QueryRow(ctx, statusQuery).Scan(&st.InRecovery, &sysid, &st.PostmasterStart, &st.Connections,
		&cur, &flush, &walfile, &recv, &replay, &st.ReplayLagMillis, &ckptTLI, &minRecTLI,
		&st.WalReceiverStatus, &recvTLI, &st.UpstreamConninfo, &repl, &slots, &st.PendingRestart)
	if err != nil {
		return err
	}
	st.SystemIdentifier = uint64(sysid)
	if !st.InRecovery {
		if st.CurrentLSN, err = ParseLSN(cur); err != nil {
			return err
		}
		if st.FlushLSN, err = ParseLSN(flush); err != nil {
			return err
		}
		if st.Timeline, err = parseTimelineFromWALFile(walfile); err != nil {
			return err
		}
	} else {
		st.ReceiveLSN, _ = parseLSNOrZero(recv)
		st.ReplayLSN, _ = parseLSNOrZero(replay)
		st.FlushLSN = st.ReceiveLSN
		st.CurrentLSN = max(st.ReceiveLSN, st.ReplayLSN)
		st.Timeline = uint32(max(ckptTLI, minRecTLI))
		if recvTLI > 0 {
			st.Timeline = uint32(recvTLI)
		}
	}
	var rows []statusReplRow
	if err := json.Unmarshal([]byte(repl), &rows); err != nil {
		return fmt.Errorf("decode pg_stat_replication rows: %w", err)
	}
	for _, j := range rows {
		r := ReplicationRow{ApplicationName: j.App, ClientAddr: j.Addr, State: j.State, SyncState: j.Sync, SlotName: j.Slot, ReplayLagMillis: j.Lag}
		r.SentLSN, _ = parseLSNOrZero(j.Sent)
		r.WriteLSN, _ = parseLSNOrZero(j.Write)
		r.FlushLSN, _ = parseLSNOrZero(j.Flush)
		r.ReplayLSN, _ = parseLSNOrZero(j.Replay)
		st.Replication = append(st.Replication, r)
	}
	var ss []statusSlot
	if err := json.Unmarshal([]byte(slots), &ss); err != nil {
		return fmt.Errorf("decode replication slots: %w", err)
	}
	for _, j := range ss {
		st.Slots = append(st.Slots, SlotStatus{Name: j.Name, Active: j.Active, WalStatus: j.Wal, RetainedBytes: j.Retained})
	}
	return nil
}

func parseLSNOrZero(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	return ParseLSN(s)
}

// countReady counts WAL segments waiting for archive_command.
func countReady(dataDir string) (int32, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "pg_wal", "archive_status"))
	if err != nil {
		return 0, err
	}
	var n int32
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ready") {
			n++
		}
	}
	return n, nil
}

// PendingRestart lists settings changed in the config files that take
// effect only after a restart (pg_settings.pending_restart, after Reload).
func (c *Controller) PendingRestart(ctx context.Context) ([]string, error) {
	var names []string
	err := c.withConn(ctx, true, func(conn *pgx.Conn) error {
		names = nil
		rows, err := conn.Query(ctx, `SELECT name FROM pg_settings WHERE pending_restart ORDER BY name`)
		if err != nil {
			return err
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing settings pending restart: %w", err)
	}
	return names, nil
}

// PendingSetting is a setting that waits for a restart: the value the
// running postmaster has (pg_settings.setting, in the setting's base unit)
// and the one it would start with (the last pg_file_settings entry for it,
// as written in the file; its boot value when no file sets it any more).
type PendingSetting struct {
	Name, Running, Pending string
}

// pendingSettingsQuery: pg_file_settings lists every file's entries in
// the order they are read; the highest seqno wins.
const pendingSettingsQuery = `SELECT s.name::text, s.setting, coalesce(f.setting, s.boot_val, '')
FROM pg_settings s
LEFT JOIN LATERAL (SELECT fs.setting FROM pg_file_settings fs WHERE fs.name = s.name ORDER BY fs.seqno DESC LIMIT 1) f ON true
WHERE s.pending_restart ORDER BY s.name`

// PendingSettings lists the settings that wait for a restart with their
// running and pending values (after Reload).
func (c *Controller) PendingSettings(ctx context.Context) ([]PendingSetting, error) {
	var out []PendingSetting
	err := c.withConn(ctx, true, func(conn *pgx.Conn) error {
		out = nil
		rows, err := conn.Query(ctx, pendingSettingsQuery)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingSetting, error) {
			var p PendingSetting
			err := r.Scan(&p.Name, &p.Running, &p.Pending)
			return p, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the settings pending restart: %w", err)
	}
	return out, nil
}

// replayTimeline is the timeline a standby has replayed up to, from
// IDENTIFY_SYSTEM on a physical replication connection to itself (a
// cascading walsender answers with its replay timeline; SQL offers it only
// through the WAL receiver, which is gone when the upstream is). Patroni
// does the same.
// cachedReplayTimeline is replayTimeline, asked again only when the
// postmaster or its replay or receive position changed since the last
// answer. A replication connection is a new backend (tens of milliseconds
// on a busy host), and a standby whose upstream is gone — exactly the
// failover candidate, whose every observation before its promotion counts —
// would otherwise open one at every status query.
func (c *Controller) cachedReplayTimeline(ctx context.Context, st *Status) (uint32, error) {
	key := replayTLI{postmasterStart: st.PostmasterStart, replayLSN: st.ReplayLSN, recvLSN: st.ReceiveLSN}
	c.tliMu.Lock()
	cached := c.tliCache
	c.tliMu.Unlock()
	if cached.tli != 0 && cached.postmasterStart.Equal(key.postmasterStart) && cached.replayLSN == key.replayLSN && cached.recvLSN == key.recvLSN {
		return cached.tli, nil
	}
	tli, err := c.replayTimeline(ctx)
	if err != nil {
		return 0, err
	}
	key.tli = tli
	c.tliMu.Lock()
	c.tliCache = key
	c.tliMu.Unlock()
	return tli, nil
}

func (c *Controller) replayTimeline(ctx context.Context) (uint32, error) {
	cfg, err := c.ConnConfig()
	if err != nil {
		return 0, err
	}
	pcfg := cfg.Config.Copy()
	pcfg.RuntimeParams["replication"] = "true"
	delete(pcfg.RuntimeParams, "application_name")
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(cctx, pcfg)
	if err != nil {
		return 0, fmt.Errorf("replication connection over %s: %w", c.opts.SocketDir, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	res, err := conn.Exec(cctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
		return 0, fmt.Errorf("IDENTIFY_SYSTEM: unexpected answer")
	}
	tli, err := strconv.ParseUint(string(res[0].Rows[0][1]), 10, 32)
	if err != nil || tli == 0 {
		return 0, fmt.Errorf("IDENTIFY_SYSTEM: timeline %q", res[0].Rows[0][1])
	}
	return uint32(tli), nil
}
