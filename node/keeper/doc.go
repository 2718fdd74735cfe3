// Package keeper is the actor that keeps this host's Postgres in line with
// the replicated state: it observes Postgres, plans (plan.go: a pure table
// of observed × desired → actions, the same one `agent --dry-run` prints)
// and executes the actions; as the primary it renews the lease and fences
// Postgres before the lease can run out (the watchdog), keeps the guard
// process armed with the lease deadline, manages the synchronous set and
// watches the disk.
//
// It depends only on the interfaces in interfaces.go — Log, Postgres, Peers
// and Clock — declared here and kept narrow; node/ wires Raft, pgctl and
// gRPC behind them.
//
// # Driving it by steps
//
// Every step method does one pass synchronously: it spawns no goroutine,
// never sleeps and never reads time except through the Clock, and iterates
// no map in an order that matters. A simulator drives a Keeper like this:
//
//	k, err := keeper.New(keeper.Config{Node: cfg, Logger: log, Clock: clk, Started: clk.Now()}, lg, pg, peers)
//	...
//	k.Reconcile(ctx)    // one reconciler round; true: the local state changed, call again at once
//	k.RenewLease(ctx)   // one pass of the lease keeper; returns when it wants the next pass
//	k.WatchdogTick(ctx) // one fencing check and guard update; returns when it wants the next
//	k.Aside(ctx)        // runs the tasks the steps queued aside (event proposals, the release
//	                    // after a crash, the storage-failure check, the post-promotion checkpoint)
//
// Reconcile is due every monitor interval and whenever Log.Changed fires or
// Postgres exits; RenewLease at the time it returned or on a change;
// WatchdogTick at the time it returned (the lease's fence time on a
// writable primary, else a monitor interval on), on a change, on a
// Postgres exit and after every Reconcile and RenewLease pass (Run pokes
// it from inside them, after an action that changed the local state and
// after a renewal). Rejoin (`hasidecar node rejoin`) is a
// step of its own that must not run beside Reconcile.
//
// Observed, StateText, Writable and LeaseValid read the keeper's state
// (safe from any goroutine); DryRun plans without acting (`agent
// --dry-run`).
//
// Run(ctx) is what node/ uses: it waits for Log.WaitCaughtUp and then
// drives the same step methods from the Clock's timers, Log.Changed and
// Postgres's exit, in goroutines it joins before returning; tasks queued
// aside then run in goroutines of their own, also joined. Shutdown stops
// Postgres and releases the lease after Run returned.
package keeper
