package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/pki"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Monitoring exit codes (Nagios convention), as repmgr node check uses.
const (
	checkOK       = 0
	checkWarning  = 1
	checkCritical = 2
	checkUnknown  = 3
)

var checkNames = []string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

type thresholds struct {
	LagWarnBytes, LagCritBytes   int64
	LagWarnMs, LagCritMs         int64
	ArchiveWarn, ArchiveCrit     int32
	SlotWarnBytes, SlotCritBytes int64
	// Now is the time certificate expiry is judged at (zero: the clock).
	Now time.Time
}

type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Code   int    `json:"-"`
	Detail string `json:"detail"`
}

type checkReport struct {
	Node     string        `json:"node"`
	Status   string        `json:"status"`
	ExitCode int           `json:"exit_code"`
	Checks   []checkResult `json:"checks"`
}

func newNodeCheckCmd() *cobra.Command {
	var t target
	th := thresholds{}
	var lagWarn, lagCrit int64
	var node nodeSelector
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Health checks of the answering node with monitoring exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			th.LagWarnMs, th.LagCritMs = lagWarn*1000, lagCrit*1000
			var rep checkReport
			c, err := t.dial()
			if err == nil {
				defer c.close()
				ctx, cancel := c.ctx(cmd.Context())
				defer cancel()
				var st *pb.StatusResponse
				var show *pb.ShowResponse
				if node == "" {
					st, err = c.node.Status(ctx, &pb.StatusRequest{})
				}
				if err == nil {
					show, err = c.cluster.Show(ctx, &pb.ShowRequest{})
				}
				switch {
				case err != nil:
					err = c.explain(err)
				case node != "":
					// An unknown name or id is the UNKNOWN check below.
					name := string(node)
					if _, n, rerr := node.resolve(show); rerr == nil {
						name = n
					}
					rep = nodeChecksFromView(name, show, th)
				default:
					rep = nodeChecks(st, show, th)
				}
			}
			if err != nil {
				rep = checkReport{Status: "UNKNOWN", ExitCode: checkUnknown, Checks: []checkResult{{Name: "sidecar", Status: "UNKNOWN", Code: checkUnknown, Detail: err.Error()}}}
			}
			if t.jsonOut {
				if err := printJSON(rep); err != nil {
					return err
				}
			} else {
				renderChecks(os.Stdout, rep)
			}
			if rep.ExitCode != checkOK {
				return &exitError{code: rep.ExitCode}
			}
			return nil
		},
	}
	t.flags(cmd, true)
	cmd.Flags().Var(&node, "node", "check this node (name or id) as the cluster sees it (default: the answering sidecar's own node)")
	cmd.Flags().Int64Var(&th.LagWarnBytes, "lag-warning-bytes", 16<<20, "replication lag in bytes that makes a WARNING")
	cmd.Flags().Int64Var(&th.LagCritBytes, "lag-critical-bytes", 256<<20, "replication lag in bytes that makes a CRITICAL")
	cmd.Flags().Int64Var(&lagWarn, "lag-warning-seconds", 60, "replay lag in seconds that makes a WARNING")
	cmd.Flags().Int64Var(&lagCrit, "lag-critical-seconds", 300, "replay lag in seconds that makes a CRITICAL")
	cmd.Flags().Int64Var(&th.SlotWarnBytes, "slot-retained-warning-bytes", 1<<30, "WAL held back in pg_wal by one replication slot that makes a WARNING")
	cmd.Flags().Int64Var(&th.SlotCritBytes, "slot-retained-critical-bytes", 8<<30, "WAL held back in pg_wal by one replication slot that makes a CRITICAL")
	cmd.Flags().Int32Var(&th.ArchiveWarn, "archive-ready-warning", 16, "WAL files waiting for archiving that make a WARNING")
	cmd.Flags().Int32Var(&th.ArchiveCrit, "archive-ready-critical", 128, "WAL files waiting for archiving that make a CRITICAL")
	return cmd
}

// nodeChecks is repmgr's node check, from the node's status and the
// leader's cluster view: role, lag (bytes and seconds), slots and
// downstream standbys, archive-ready files, timeline agreement.
func nodeChecks(st *pb.StatusResponse, show *pb.ShowResponse, th thresholds) checkReport {
	rep := checkReport{Node: st.Name}
	add := func(name string, code int, format string, args ...any) {
		rep.Checks = append(rep.Checks, checkResult{Name: name, Code: code, Status: checkNames[code], Detail: fmt.Sprintf(format, args...)})
	}
	var me, primary *pb.NodeView
	for _, n := range show.Nodes {
		if n.Name == st.Name {
			me = n
		}
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			primary = n
		}
	}
	if st.TlsCertNotAfterUnix != 0 {
		now := th.Now
		if now.IsZero() {
			now = time.Now()
		}
		end := time.Unix(st.TlsCertNotAfterUnix, 0).UTC()
		switch left := end.Sub(now); {
		case left <= 0:
			add("certificate", checkCritical, "the TLS certificate expired on %s: renew it (hasidecar tls renew)", end.Format(time.DateOnly))
		case left < pki.ExpiryWarning:
			add("certificate", checkWarning, "the TLS certificate expires on %s, in %d days: renew it (hasidecar tls renew)", end.Format(time.DateOnly), int(left.Hours()/24))
		default:
			add("certificate", checkOK, "the TLS certificate is valid until %s", end.Format(time.DateOnly))
		}
	}
	if st.Kind == pb.NodeKind_NODE_KIND_WITNESS {
		add("role", checkOK, "node is a witness (raft %s)", strings.ToLower(st.RaftState))
		return finish(rep)
	}
	if len(st.SetAsideCopies) > 0 {
		// Reported first so that the early returns below keep it.
		add("set_aside", checkWarning, "data directory set aside by a re-clone: %s; delete it when no longer needed", strings.Join(st.SetAsideCopies, ", "))
	}
	pg := st.Postgres
	if code, detail, ok := diskCheck(pg); ok {
		// Before the early returns: a full disk may be why Postgres stopped.
		add("disk", code, "%s", detail)
	}
	if pg == nil || !pg.Running {
		add("postgres", checkCritical, "Postgres is not running (%s)", st.ReconcilerState)
		return finish(rep)
	}
	role := fsm.RoleName(st.Role)
	switch {
	case st.Role == pb.NodeRole_NODE_ROLE_PRIMARY && pg.InRecovery:
		add("role", checkCritical, "the cluster says primary, Postgres is in recovery")
		return finish(rep) // the checks below would compare it with itself
	case st.Role == pb.NodeRole_NODE_ROLE_STANDBY && !pg.InRecovery:
		add("role", checkCritical, "the cluster says standby, Postgres is writable")
		return finish(rep)
	case st.Role == pb.NodeRole_NODE_ROLE_UNSPECIFIED:
		add("role", checkWarning, "not yet registered as primary or standby")
	default:
		add("role", checkOK, "node is %s", role)
	}
	if p := pg.PendingRestart; len(p) > 0 {
		add("pending_restart", checkWarning, "settings changed that take effect only after a restart of Postgres: %s", strings.Join(p, ", "))
	} else {
		add("pending_restart", checkOK, "no setting waits for a restart")
	}
	if pg.InRecovery {
		lag := int64(-1)
		if me != nil {
			lag = me.LagBytes
		}
		switch {
		case lag < 0:
			add("lag_bytes", checkUnknown, "lag unknown (no report from the primary)")
		case lag >= th.LagCritBytes:
			add("lag_bytes", checkCritical, "%d bytes behind the primary (critical: %d)", lag, th.LagCritBytes)
		case lag >= th.LagWarnBytes:
			add("lag_bytes", checkWarning, "%d bytes behind the primary (warning: %d)", lag, th.LagWarnBytes)
		default:
			add("lag_bytes", checkOK, "%d bytes behind the primary", lag)
		}
		ms := pg.ReplayLagMs
		switch {
		case ms >= th.LagCritMs:
			add("lag_seconds", checkCritical, "replay %.1f s behind (critical: %d s)", float64(ms)/1000, th.LagCritMs/1000)
		case ms >= th.LagWarnMs:
			add("lag_seconds", checkWarning, "replay %.1f s behind (warning: %d s)", float64(ms)/1000, th.LagWarnMs/1000)
		default:
			add("lag_seconds", checkOK, "replay %.1f s behind", float64(ms)/1000)
		}
		if pg.WalReceiverStatus == "streaming" {
			add("upstream", checkOK, "streaming from the primary")
		} else {
			add("upstream", checkCritical, "not streaming (wal receiver: %q)", pg.WalReceiverStatus)
		}
		switch {
		case primary == nil || primary.Timeline == 0:
			add("timeline", checkUnknown, "the primary's timeline is unknown")
		case primary.Timeline != pg.Timeline:
			add("timeline", checkCritical, "on timeline %d, the primary is on %d", pg.Timeline, primary.Timeline)
		default:
			add("timeline", checkOK, "on the primary's timeline %d", pg.Timeline)
		}
	} else {
		// Downstream: every active standby connected through its slot.
		connected := map[string]bool{}
		for _, r := range pg.Replication {
			if r.State == "streaming" {
				connected[r.ApplicationName] = true
			}
		}
		var missing []string
		want := 0
		for _, n := range show.Nodes {
			if n.Kind == pb.NodeKind_NODE_KIND_DATA && n.Role == pb.NodeRole_NODE_ROLE_STANDBY && n.Active {
				want++
				if !connected[n.Name] {
					missing = append(missing, n.Name)
				}
			}
		}
		if len(missing) > 0 {
			add("downstream", checkWarning, "%d of %d standbys streaming; not connected: %s", want-len(missing), want, strings.Join(missing, ", "))
		} else {
			add("downstream", checkOK, "%d of %d standbys streaming", want, want)
		}
		slotless := []string{}
		for _, r := range pg.Replication {
			// The lease gate (pgctl/gate.go) streams without a slot by design.
			if r.State == "streaming" && r.SlotName == "" && r.ApplicationName != pgctl.GateApplicationName {
				slotless = append(slotless, r.ApplicationName)
			}
		}
		if len(slotless) > 0 {
			add("slots", checkWarning, "standbys streaming without a slot: %s", strings.Join(slotless, ", "))
		} else {
			add("slots", checkOK, "every connected standby uses its slot")
		}
		code, detail := slotRetainedCheck(pg.Slots, th)
		add("slot_retained", code, "%s", detail)
	}
	switch {
	case pg.ArchiveReady >= th.ArchiveCrit:
		add("archive_ready", checkCritical, "%d WAL files waiting to be archived (critical: %d)", pg.ArchiveReady, th.ArchiveCrit)
	case pg.ArchiveReady >= th.ArchiveWarn:
		add("archive_ready", checkWarning, "%d WAL files waiting to be archived (warning: %d)", pg.ArchiveReady, th.ArchiveWarn)
	default:
		add("archive_ready", checkOK, "%d WAL files waiting to be archived", pg.ArchiveReady)
	}
	return finish(rep)
}

// slotRetainedCheck: the slot holding back the most WAL on the primary,
// against the thresholds (slot_retention drops a slot that stays inactive;
// max_slot_wal_keep_size caps one in Postgres).
func slotRetainedCheck(slots []*pb.SlotStatus, th thresholds) (int, string) {
	var worst *pb.SlotStatus
	for _, s := range slots {
		if worst == nil || s.RetainedBytes > worst.RetainedBytes {
			worst = s
		}
	}
	if worst == nil {
		return checkOK, "no replication slot"
	}
	state := "active"
	if !worst.Active {
		state = "inactive"
	}
	switch {
	case worst.RetainedBytes >= th.SlotCritBytes:
		return checkCritical, fmt.Sprintf("slot %s (%s) holds back %s of WAL (critical: %s)", worst.Name, state, config.ByteSize(worst.RetainedBytes), config.ByteSize(th.SlotCritBytes))
	case worst.RetainedBytes >= th.SlotWarnBytes:
		return checkWarning, fmt.Sprintf("slot %s (%s) holds back %s of WAL (warning: %s)", worst.Name, state, config.ByteSize(worst.RetainedBytes), config.ByteSize(th.SlotWarnBytes))
	}
	return checkOK, fmt.Sprintf("the most WAL a slot holds back: %s (%s, %s)", config.ByteSize(worst.RetainedBytes), worst.Name, state)
}

// defaultDiskFullThreshold is postgres.disk_full_threshold's default, for a
// status that names no threshold.
const defaultDiskFullThreshold = 64 << 20

// diskCheck judges the free space the node reported on the filesystem of
// its data directory (and of pg_wal, when separate): CRITICAL when the
// node says its disk is full (below postgres.disk_full_threshold, or a
// write failed for lack of space), WARNING below twice the threshold or
// 10% of the filesystem, else OK. ok is false when nothing was measured.
func diskCheck(pg *pb.PostgresStatus) (code int, detail string, ok bool) {
	if pg == nil || (pg.TotalBytes == 0 && !pg.DiskFull) {
		return 0, "", false
	}
	th := pg.DiskFullThresholdBytes
	if th == 0 {
		th = defaultDiskFullThreshold
	}
	judge := func(where string, free, total uint64) (int, string) {
		switch {
		case free < th:
			return checkCritical, fmt.Sprintf("%d bytes free on %s filesystem (threshold %d)", free, where, th)
		case free < 2*th:
			return checkWarning, fmt.Sprintf("%d bytes free on %s filesystem, less than twice the threshold %d", free, where, th)
		case free < total/10:
			return checkWarning, fmt.Sprintf("%d bytes free on %s filesystem, less than 10%% of its %d bytes", free, where, total)
		}
		return checkOK, fmt.Sprintf("%d bytes free of %d on %s filesystem (threshold %d)", free, total, where, th)
	}
	code, detail = checkOK, ""
	if pg.TotalBytes > 0 {
		code, detail = judge("the data directory's", pg.FreeBytes, pg.TotalBytes)
	}
	if pg.WalTotalBytes > 0 {
		if c, d := judge("pg_wal's", pg.WalFreeBytes, pg.WalTotalBytes); c > code || detail == "" {
			code, detail = c, d
		}
	}
	if pg.DiskFull && code != checkCritical {
		// A write failed for lack of space although space was measured.
		code, detail = checkCritical, pg.DiskFullReason
	}
	return code, detail, true
}

// nodeChecksFromView checks a node from the leader's view: a node whose
// sidecar does not report, or whose Postgres is not running, is CRITICAL.
func nodeChecksFromView(name string, show *pb.ShowResponse, th thresholds) checkReport {
	for _, n := range show.Nodes {
		if n.Name != name {
			continue
		}
		if n.Status != "running" && n.Status != "* running" {
			rep := checkReport{Node: name}
			code := checkCritical
			rep.Checks = []checkResult{{Name: "status", Code: code, Status: checkNames[code], Detail: fmt.Sprintf("the cluster sees %s as %s", name, n.Status)}}
			return finish(rep)
		}
		st := &pb.StatusResponse{Name: n.Name, Kind: n.Kind, Role: n.Role, Postgres: n.Postgres, RaftState: n.RaftState}
		return nodeChecks(st, show, th)
	}
	rep := checkReport{Node: name, Checks: []checkResult{{Name: "node", Code: checkUnknown, Status: "UNKNOWN", Detail: "no node named " + name}}}
	return finish(rep)
}

// finish sets the worst status: CRITICAL > WARNING > UNKNOWN > OK.
func finish(rep checkReport) checkReport {
	rank := map[int]int{checkOK: 0, checkUnknown: 1, checkWarning: 2, checkCritical: 3}
	worst := checkOK
	for _, c := range rep.Checks {
		if rank[c.Code] > rank[worst] {
			worst = c.Code
		}
	}
	rep.ExitCode, rep.Status = worst, checkNames[worst]
	return rep
}

func renderChecks(w io.Writer, rep checkReport) {
	name := rep.Node
	if name == "" {
		name = "(unknown)"
	}
	fmt.Fprintf(w, "Node %q: %s\n", name, rep.Status)
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "\t%s: %s (%s)\n", c.Name, c.Status, c.Detail)
	}
}
