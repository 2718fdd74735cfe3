package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/showdoc"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// table prints rows like repmgr: columns separated by " | ", a dashed rule
// under the header.
func table(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(cells []string) {
		parts := make([]string, len(cells))
		for i, c := range cells {
			if i == len(cells)-1 {
				parts[i] = c
			} else {
				parts[i] = c + strings.Repeat(" ", width[i]-len(c))
			}
		}
		fmt.Fprintln(w, " "+strings.TrimRight(strings.Join(parts, " | "), " "))
	}
	line(header)
	rule := make([]string, len(header))
	for i := range header {
		rule[i] = strings.Repeat("-", width[i]+2)
	}
	fmt.Fprintln(w, strings.Join(rule, "+"))
	for _, r := range rows {
		line(r)
	}
}

// toShowJSON is the document of `cluster show --json` (and of the HTTP
// API's /cluster): internal/showdoc.
func toShowJSON(r *pb.ShowResponse) showdoc.Doc { return showdoc.FromShow(r) }

func failoverModeName(m pb.FailoverMode) string { return showdoc.FailoverModeName(m) }

func byWhom(who string) string {
	if who == "" {
		return ""
	}
	return " by " + who
}

func renderShow(w io.Writer, r *pb.ShowResponse) {
	header := []string{"ID", "Name", "Role", "Status", "Upstream", "Location", "Priority", "Timeline", "Lag", "Raft", "Connection string"}
	var rows [][]string
	for _, n := range r.Nodes {
		status := n.Status
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY && status == "running" {
			status = "* running"
		}
		tl, lag := "", ""
		if n.Timeline != 0 {
			tl = fmt.Sprint(n.Timeline)
		}
		if n.LagBytes >= 0 && n.Kind == pb.NodeKind_NODE_KIND_DATA {
			lag = humanBytes(n.LagBytes)
		}
		raftState := strings.ToLower(n.RaftState)
		switch {
		case !n.Voter && raftState != "":
			raftState += " (non-voter)"
		case !n.Voter:
			raftState = "non-voter" // not answering: its suffrage still shows
		}
		role := fsm.RoleName(n.Role)
		if n.SyncStandby {
			role += " (sync)"
		}
		rows = append(rows, []string{fmt.Sprint(n.Id), n.Name, role, status, n.Upstream, n.Location,
			fmt.Sprint(n.Priority), tl, lag, raftState, n.Conninfo})
	}
	table(w, header, rows)
	fmt.Fprintln(w)
	paused := "no"
	if r.Paused {
		paused = "yes"
	}
	leader := r.RaftLeader
	if leader == "" {
		leader = "(none: no quorum)"
	}
	replication := "asynchronous"
	if r.Synchronous {
		replication = fmt.Sprintf("synchronous %s, ANY %d (committed %d)", r.SyncMode, r.SynchronousCount, r.SyncCommittedCount)
	}
	fmt.Fprintf(w, "Cluster: %s   Term: %d   Raft leader: %s   Failover: %s   Replication: %s   Paused: %s\n", r.Cluster, r.Term, leader, failoverModeName(r.FailoverMode), replication, paused)
	if sw := r.Switchover; sw != nil {
		fmt.Fprintf(w, "Switchover in flight: node %d -> node %d (began in term %d)\n", sw.FromId, sw.ToId, sw.Term)
	}
	if op := r.Scheduled; op != nil {
		fmt.Fprintf(w, "Scheduled: %s, asked %s%s; cancel with `hasidecar switchover --cancel`\n", fsm.DescribeScheduled(op),
			time.UnixMilli(op.RequestedAtUnixMs).UTC().Format(time.RFC3339), byWhom(op.RequestedBy))
	}
	if op := r.Running; op != nil {
		fmt.Fprintf(w, "Running (scheduled): %s, started %s\n", fsm.DescribeScheduled(op), time.UnixMilli(op.StartedAtUnixMs).UTC().Format(time.RFC3339))
	}
	var pending []string
	for _, n := range r.Nodes {
		if p := n.Postgres.GetPendingRestart(); len(p) > 0 {
			pending = append(pending, fmt.Sprintf("%s (%s)", n.Name, strings.Join(p, ", ")))
		}
	}
	if len(pending) > 0 {
		fmt.Fprintf(w, "Pending restart (settings that take effect only after a restart): %s\n", strings.Join(pending, "; "))
	}
	if r.SyncWarning != "" {
		fmt.Fprintf(w, "WARNING: %s\n", r.SyncWarning)
	}
	if u := r.UnregisteredRaftServers; len(u) > 0 {
		fmt.Fprintf(w, "WARNING: Raft members with no node row (they count towards the quorum): %s; remove each with `hasidecar node remove --name NAME`\n", strings.Join(u, ", "))
	}
}

func humanBytes(b int64) string {
	switch {
	case b < 1024:
		return fmt.Sprintf("%d B", b)
	case b < 1024*1024:
		return fmt.Sprintf("%.1f kB", float64(b)/1024)
	case b < 1024*1024*1024:
		return fmt.Sprintf("%.1f MB", float64(b)/1024/1024)
	}
	return fmt.Sprintf("%.1f GB", float64(b)/1024/1024/1024)
}

type eventJSON struct {
	ID        uint64 `json:"id"`
	NodeID    uint32 `json:"node_id"`
	NodeName  string `json:"node_name"`
	Event     string `json:"event"`
	OK        bool   `json:"ok"`
	Timestamp string `json:"timestamp"`
	Term      uint64 `json:"term"`
	Details   string `json:"details"`
}

func toEventsJSON(evs []*pb.Event) []eventJSON {
	out := []eventJSON{}
	for _, e := range evs {
		out = append(out, eventJSON{ID: e.Id, NodeID: e.NodeId, NodeName: e.NodeName, Event: e.Type, OK: e.Ok,
			Timestamp: timeJSON(e.TimestampUnixMs), Term: e.Term, Details: e.Details})
	}
	return out
}

func renderEvents(w io.Writer, evs []*pb.Event) {
	var rows [][]string
	for _, e := range evs {
		ok := "t"
		if !e.Ok {
			ok = "f"
		}
		id := ""
		if e.NodeId != 0 {
			id = fmt.Sprint(e.NodeId)
		}
		rows = append(rows, []string{id, e.NodeName, e.Type, ok, timeText(e.TimestampUnixMs), fmt.Sprint(e.Term), e.Details})
	}
	table(w, []string{"Node ID", "Name", "Event", "OK", "Timestamp", "Term", "Details"}, rows)
}

type statusJSON struct {
	NodeID     uint32  `json:"node_id"`
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	Cluster    string  `json:"cluster"`
	Role       string  `json:"role"`
	RaftState  string  `json:"raft_state"`
	RaftLeader string  `json:"raft_leader"`
	Term       uint64  `json:"term"`
	Applied    uint64  `json:"applied_index"`
	Commit     uint64  `json:"commit_index"`
	DataDir    string  `json:"data_dir,omitempty"`
	Reconciler string  `json:"reconciler,omitempty"`
	Version    string  `json:"version"`
	Postgres   *pgJSON `json:"postgres,omitempty"`
}

type pgJSON struct {
	Running          bool   `json:"running"`
	InRecovery       bool   `json:"in_recovery"`
	Timeline         uint32 `json:"timeline"`
	SystemIdentifier string `json:"system_identifier"`
	CurrentLSN       string `json:"current_lsn,omitempty"`
	ReceiveLSN       string `json:"receive_lsn,omitempty"`
	ReplayLSN        string `json:"replay_lsn,omitempty"`
	WalReceiver      string `json:"wal_receiver,omitempty"`
	ReplayLagMs      int64  `json:"replay_lag_ms"`
	Port             uint32 `json:"port"`
	Error            string `json:"error,omitempty"`
	// The data directory's filesystem (absent: not measured).
	FreeBytes      uint64 `json:"free_bytes,omitempty"`
	TotalBytes     uint64 `json:"total_bytes,omitempty"`
	DiskFull       bool   `json:"disk_full,omitempty"`
	DiskFullReason string `json:"disk_full_reason,omitempty"`
}

func lsnText(v uint64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%X/%X", v>>32, uint32(v))
}

func toPGJSON(p *pb.PostgresStatus) *pgJSON {
	if p == nil {
		return nil
	}
	return &pgJSON{Running: p.Running, InRecovery: p.InRecovery, Timeline: p.Timeline, SystemIdentifier: fmt.Sprint(p.SystemIdentifier),
		CurrentLSN: lsnText(p.CurrentLsn), ReceiveLSN: lsnText(p.ReceiveLsn), ReplayLSN: lsnText(p.ReplayLsn),
		WalReceiver: p.WalReceiverStatus, ReplayLagMs: p.ReplayLagMs, Port: p.Port, Error: p.Error,
		FreeBytes: p.FreeBytes, TotalBytes: p.TotalBytes, DiskFull: p.DiskFull, DiskFullReason: p.DiskFullReason}
}

func toStatusJSON(s *pb.StatusResponse) statusJSON {
	return statusJSON{NodeID: s.NodeId, Name: s.Name, Kind: fsm.KindName(s.Kind), Cluster: s.Cluster, Role: fsm.RoleName(s.Role),
		RaftState: strings.ToLower(s.RaftState), RaftLeader: s.RaftLeader, Term: s.Term, Applied: s.AppliedIndex, Commit: s.CommitIndex,
		DataDir: s.DataDir, Reconciler: s.ReconcilerState, Version: s.Version, Postgres: toPGJSON(s.Postgres)}
}

func renderStatus(w io.Writer, s *pb.StatusResponse) {
	j := toStatusJSON(s)
	kv := [][2]string{
		{"Node", fmt.Sprintf("%s (id %d, %s)", j.Name, j.NodeID, j.Kind)},
		{"Cluster", j.Cluster},
		{"Role", j.Role},
		{"Raft", fmt.Sprintf("%s, leader %s, applied %d, commit %d", j.RaftState, orNone(j.RaftLeader), j.Applied, j.Commit)},
		{"Term", fmt.Sprint(j.Term)},
	}
	if p := j.Postgres; p != nil {
		state := "stopped"
		switch {
		case p.Running && p.InRecovery:
			state = "running in recovery"
		case p.Running:
			state = "running, writable"
		}
		kv = append(kv, [2]string{"Postgres", fmt.Sprintf("%s (port %d, data dir %s)", state, p.Port, j.DataDir)})
		if p.Running {
			kv = append(kv, [2]string{"Timeline", fmt.Sprint(p.Timeline)}, [2]string{"System identifier", p.SystemIdentifier})
			if p.InRecovery {
				kv = append(kv, [2]string{"WAL receiver", p.WalReceiver}, [2]string{"Received / replayed", p.ReceiveLSN + " / " + p.ReplayLSN},
					[2]string{"Replay lag", fmt.Sprintf("%d ms", p.ReplayLagMs)})
			} else {
				kv = append(kv, [2]string{"Current LSN", p.CurrentLSN})
			}
		}
		if p.TotalBytes > 0 || p.DiskFull {
			disk := fmt.Sprintf("%d bytes free of %d", p.FreeBytes, p.TotalBytes)
			if p.DiskFull {
				disk += " (FULL: " + p.DiskFullReason + ")"
			}
			kv = append(kv, [2]string{"Data dir disk", disk})
		}
		if p.Error != "" {
			kv = append(kv, [2]string{"Last error", p.Error})
		}
		kv = append(kv, [2]string{"Reconciler", j.Reconciler})
	}
	kv = append(kv, [2]string{"Version", j.Version})
	for _, p := range kv {
		fmt.Fprintf(w, "%-20s %s\n", p[0]+":", p[1])
	}
}

func orNone(leader string) string {
	if leader == "" {
		return "(none: no quorum)"
	}
	return leader
}
