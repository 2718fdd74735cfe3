// Package showdoc is the one JSON document of the cluster's view: what
// `hasidecar cluster show --json` prints and what a sidecar's HTTP /cluster
// answers, built from the gRPC ShowResponse.
package showdoc

import (
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Doc is the stable JSON shape of `cluster show --json` and of the HTTP
// API's /cluster.
type Doc struct {
	Cluster     string `json:"cluster"`
	Term        uint64 `json:"term"`
	RaftLeader  string `json:"raft_leader"`
	Paused      bool   `json:"paused"`
	Failover    string `json:"failover_mode"`
	Synchronous bool   `json:"synchronous"`
	// Synchronous mode only (omitted otherwise): SyncMode on or strict;
	// SyncCount synchronous_count k; SyncCommittedCount the committed
	// count the failover rule uses (0: empty set).
	SyncMode           string  `json:"synchronous_mode,omitempty"`
	SyncCount          int32   `json:"synchronous_count,omitempty"`
	SyncCommittedCount *uint32 `json:"synchronous_committed_count,omitempty"`
	// Warnings: e.g. synchronous mode degraded below synchronous_count; []
	// when none.
	Warnings []string `json:"warnings"`
	Nodes    []Node   `json:"nodes"`
	// UnregisteredRaftServers: Raft members with no node row (omitted when none).
	UnregisteredRaftServers []string `json:"unregistered_raft_servers,omitempty"`
	// Scheduled: the operation waiting for its time; Running: the one the
	// Raft leader has started and not ended (each omitted when none).
	Scheduled *Scheduled `json:"scheduled,omitempty"`
	Running   *Scheduled `json:"running,omitempty"`
}

// Scheduled is a scheduled operation (`switchover --scheduled`, `restart
// --scheduled`).
type Scheduled struct {
	ID          uint64 `json:"id"`
	Kind        string `json:"kind"`   // switchover | restart
	Target      string `json:"target"` // switchover: the standby to promote; restart: the one node, "" for all
	Pending     bool   `json:"pending"`
	At          string `json:"at"` // RFC 3339, UTC
	AtUnixMs    int64  `json:"at_unix_ms"`
	RequestedAt string `json:"requested_at"`
	RequestedBy string `json:"requested_by"`
	Summary     string `json:"summary"`
}

func scheduled(op *pb.ScheduledOperation) *Scheduled {
	if op == nil {
		return nil
	}
	utc := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
	return &Scheduled{ID: op.Id, Kind: fsm.ScheduledKindName(op.Kind), Target: op.TargetName, Pending: op.Pending,
		At: utc(op.AtUnixMs), AtUnixMs: op.AtUnixMs, RequestedAt: utc(op.RequestedAtUnixMs), RequestedBy: op.RequestedBy,
		Summary: fsm.DescribeScheduled(op)}
}

type Node struct {
	ID       uint32 `json:"id"`
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Role     string `json:"role"`
	Status   string `json:"status"`
	Upstream string `json:"upstream"`
	Location string `json:"location"`
	Priority int32  `json:"priority"`
	// Tags: the node's tags (nofailover, noloadbalance, nosync); [] when none.
	Tags      []string `json:"tags"`
	Timeline  *uint32  `json:"timeline"`
	LagBytes  *int64   `json:"lag_bytes"`
	Conninfo  string   `json:"conninfo"`
	RaftState string   `json:"raft_state"`
	Voter     bool     `json:"voter"`
	Sync      bool     `json:"sync"`
	// PendingRestart: Postgres settings changed in its configuration that
	// take effect only after a restart (pg_settings.pending_restart); []
	// when none or unknown.
	PendingRestart []string `json:"pending_restart"`
}

// FailoverModeName is the failover_mode field of the document.
func FailoverModeName(m pb.FailoverMode) string {
	if m == pb.FailoverMode_FAILOVER_MODE_MANUAL {
		return "manual"
	}
	return "automatic"
}

// FromShow is the document of r.
func FromShow(r *pb.ShowResponse) Doc {
	out := Doc{Cluster: r.Cluster, Term: r.Term, RaftLeader: r.RaftLeader, Paused: r.Paused, Failover: FailoverModeName(r.FailoverMode), Synchronous: r.Synchronous, Nodes: []Node{}, UnregisteredRaftServers: r.UnregisteredRaftServers,
		Warnings:  []string{},
		Scheduled: scheduled(r.Scheduled), Running: scheduled(r.Running)}
	if r.Synchronous {
		kf := r.SyncCommittedCount
		out.SyncMode, out.SyncCount, out.SyncCommittedCount = r.SyncMode, r.SynchronousCount, &kf
	}
	if r.SyncWarning != "" {
		out.Warnings = append(out.Warnings, r.SyncWarning)
	}
	for _, n := range r.Nodes {
		j := Node{
			ID: n.Id, Name: n.Name, Kind: fsm.KindName(n.Kind), Role: fsm.RoleName(n.Role), Status: n.Status,
			Upstream: n.Upstream, Location: n.Location, Priority: n.Priority, Conninfo: n.Conninfo,
			RaftState: strings.ToLower(n.RaftState), Voter: n.Voter, Sync: n.SyncStandby,
		}
		if n.Timeline != 0 {
			tl := n.Timeline
			j.Timeline = &tl
		}
		if n.LagBytes >= 0 {
			lag := n.LagBytes
			j.LagBytes = &lag
		}
		j.PendingRestart = append([]string{}, n.Postgres.GetPendingRestart()...)
		j.Tags = append([]string{}, n.Tags...)
		out.Nodes = append(out.Nodes, j)
	}
	return out
}
