// Package fsm is hasidecar's replicated state machine: the `nodes`, `events`
// and `voting_term` tables, the primary's lease and the cluster settings.
//
// The rules, taken from hashicorp/raft's FSM contract and kept here on purpose:
//
//   - Apply is deterministic. Everything time-like (event timestamps, lease
//     durations, retention) comes inside the command from the proposer; the
//     FSM never reads a clock, never does I/O and never looks at a random
//     source. Two machines fed the same commands hold the same state.
//   - A command that cannot be applied (a stale term, an unknown node, an
//     invalid role transition, another cluster's name or system identifier)
//     changes nothing and returns a typed *Error that the proposer sees.
//   - A log entry that cannot be decoded is a corrupt log: the caller panics
//     rather than half-apply it (see node/raftfsm.go).
//   - Snapshot returns the state as bytes (a deterministic protobuf encoding);
//     Restore discards all previous state and takes the snapshot's.
//   - Command types are append-only: a removed command or field becomes
//     `reserved` in proto/hasidecar/v1/fsm.proto, never reused.
//
// Terms: the voting term (the `voting_term` table of repmgr) grows by exactly
// one with every promotion. Every role decision names the term it was made in
// and a stale term is rejected, which makes each decision a compare-and-set.
// A promotion also names the lease serial the leader saw expire, so a
// renewal that committed after the decision makes the decision stale.
//
// Side effects (promoting Postgres, rewriting recovery settings) never happen
// here: package node observes the applied state and acts on it.
package fsm
