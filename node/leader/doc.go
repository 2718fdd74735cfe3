// Package leader is the Raft leader's actor: the decider (the primary's
// lease expired or was released → choose and commit a promotion, or record
// why not), the switchover coordinator (promote the target once it has the
// old primary's shutdown checkpoint, or roll back at the deadline) and the
// leadership balancing (hand Raft leadership away from the Postgres
// primary).
//
// It depends only on the interfaces in interfaces.go — Log, Peers, Raft and
// Clock. The pure parts of a decision (who is promotable, who wins, when the
// lease is expired, the Promote command) are in package fsm.
//
// # Driving it by steps
//
// Decide(ctx) does one pass synchronously: no goroutine, no sleep, time
// only from the Clock, no decision-relevant map iteration. NextWake says
// when the next pass is due if nothing changes (the lease's expiry to the
// millisecond, at most IdleInterval away; DecideInterval once it expired). A simulator drives it like this:
//
//	l := leader.New(leader.Config{Name: "pg1", Lease: 4 * time.Second, DriftMarginPercent: 10,
//		MonitorInterval: time.Second, Logger: log, Clock: clk}, lg, peers, rf)
//	l.Decide(ctx)      // once on becoming leader (after a Barrier), then
//	at := l.NextWake() // again at that time, or as soon as Log.Changed fires
//
// Run(ctx) is what node/ uses, only while this node leads (started after a
// Barrier on raft's NotifyCh, cancelled on the loss of leadership): it
// drives Decide from the Clock and Log.Changed until ctx ends.
package leader
