package node

import (
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/hasidecar/hasidecar/config"
)

// The HTTP checks load balancers and orchestrators ask (Patroni's names and
// meanings). Each is decided by checkEndpoint from facts this sidecar
// already holds (its last Postgres observation, the FSM, its Raft state),
// never by asking Postgres while the request waits, so every check answers
// at once even when Postgres hangs.

// healthFacts is what the checks decide on.
type healthFacts struct {
	Data       bool // a data node (false: a witness)
	Running    bool // Postgres answered the last observation
	InRecovery bool
	Streaming  bool // a standby whose WAL receiver streams
	// Writable: the current, lease-holding primary (node.writable).
	Writable bool
	// SyncMember: in the committed synchronous set (synchronous mode).
	SyncMember bool
	// Synchronous: the cluster runs in synchronous mode.
	Synchronous   bool
	NoLoadBalance bool
	// LagBytes: how far this standby's replay is behind the primary's
	// flush position at its last lease renewal; -1 unknown.
	LagBytes int64
	// RaftLeader: this node knows a Raft leader (or is it).
	RaftLeader bool
	// LoopAge: since this sidecar's monitor loop last ran; LoopLimit: the
	// age past which it counts as stuck.
	LoopAge, LoopLimit time.Duration
}

// endpoint is one check: its paths (the first is the name) and its rule.
type endpoint struct {
	paths []string
	// lag: the check takes ?lag=SIZE (a standby further behind fails).
	lag  bool
	rule func(f healthFacts) (bool, string)
}

var endpoints = []endpoint{
	{paths: []string{"/primary", "/leader", "/read-write", "/master"}, rule: func(f healthFacts) (bool, string) {
		if !f.Writable {
			return false, "not the lease-holding primary"
		}
		return true, ""
	}},
	{paths: []string{"/replica"}, lag: true, rule: func(f healthFacts) (bool, string) {
		switch {
		case !f.Running || !f.InRecovery || !f.Streaming:
			return false, "not a streaming standby"
		case f.NoLoadBalance:
			return false, "tagged noloadbalance"
		}
		return true, ""
	}},
	{paths: []string{"/read-only"}, lag: true, rule: func(f healthFacts) (bool, string) {
		switch {
		case f.Writable:
			return true, ""
		case !f.Running || !f.InRecovery || !f.Streaming:
			return false, "neither the primary nor a streaming standby"
		case f.NoLoadBalance:
			return false, "tagged noloadbalance"
		}
		return true, ""
	}},
	{paths: []string{"/sync", "/synchronous"}, lag: true, rule: func(f healthFacts) (bool, string) {
		switch {
		case !f.Running || !f.InRecovery || !f.Streaming:
			return false, "not a streaming standby"
		case !f.SyncMember:
			return false, "not in the synchronous set"
		}
		return true, ""
	}},
	{paths: []string{"/async", "/asynchronous"}, lag: true, rule: func(f healthFacts) (bool, string) {
		switch {
		case !f.Running || !f.InRecovery || !f.Streaming:
			return false, "not a streaming standby"
		case f.SyncMember:
			return false, "in the synchronous set"
		}
		return true, ""
	}},
	{paths: []string{"/health"}, rule: func(f healthFacts) (bool, string) {
		if f.Data && !f.Running {
			return false, "postgres is not running"
		}
		return true, ""
	}},
	// liveness: the sidecar itself is not stuck (restart it if not).
	{paths: []string{"/liveness"}, rule: func(f healthFacts) (bool, string) {
		if f.LoopAge > f.LoopLimit {
			return false, fmt.Sprintf("the monitor loop last ran %s ago", f.LoopAge.Round(time.Millisecond))
		}
		return true, ""
	}},
	// readiness: the node does its job: the primary takes writes, a
	// standby streams, a witness follows a Raft leader.
	{paths: []string{"/readiness"}, rule: func(f healthFacts) (bool, string) {
		switch {
		case !f.Data:
			if !f.RaftLeader {
				return false, "no raft leader known"
			}
			return true, ""
		case f.Writable:
			return true, ""
		case f.Running && f.InRecovery && f.Streaming:
			return true, ""
		}
		return false, "neither the lease-holding primary nor a streaming standby"
	}},
}

// findEndpoint is the check served at path, or nil.
func findEndpoint(path string) *endpoint {
	for i := range endpoints {
		if slices.Contains(endpoints[i].paths, path) {
			return &endpoints[i]
		}
	}
	return nil
}

// checkEndpoint answers one check: ok (200) or not (503) with the reason;
// err is a bad query (400).
func (e *endpoint) check(q url.Values, f healthFacts) (ok bool, reason string, err error) {
	var maxLag uint64
	hasLag := false
	if v := q.Get("lag"); v != "" {
		if !e.lag {
			return false, "", fmt.Errorf("%s takes no lag parameter", e.paths[0])
		}
		n, perr := config.ParseByteSize(v)
		if perr != nil {
			return false, "", fmt.Errorf("lag=%s: %v", v, perr)
		}
		maxLag, hasLag = n, true
	}
	if ok, reason = e.rule(f); !ok {
		return false, reason, nil
	}
	// The primary has no lag; a standby's must be known and within it.
	if hasLag && !f.Writable {
		switch {
		case f.LagBytes < 0:
			return false, "replication lag unknown", nil
		case uint64(f.LagBytes) > maxLag:
			return false, fmt.Sprintf("replication lag %d bytes is over %d", f.LagBytes, maxLag), nil
		}
	}
	return true, "", nil
}
