// Package pgctl is everything that touches a local PostgreSQL instance:
// initdb, pg_basebackup, pg_rewind, the postmaster process, the
// configuration files hasidecar manages, and status / slot / role queries
// over the unix socket with pgx. It imports no other package of this module.
//
// The postmaster is a child of the calling process (never daemonized) with a
// parent-death signal: when the sidecar dies, its Postgres gets SIGQUIT
// (immediate shutdown). When the caller is root, every Postgres binary runs
// as Options.OSUser; the caller itself connects as Options.Superuser over
// the unix socket through the pg_ident.conf map "hasidecar" (so WriteHBA
// must list the caller's OS user in IdentUsers, "root" by default).
//
// Typical sequences:
//
//	bootstrap a primary:  New, InitDB, WriteManagedConfig(ManagedSettings(o)+params),
//	                      WriteHBA, Start, EnsureRole(replication user)
//	clone a standby:      (on the primary: EnsureSlot) BaseBackup, WriteManagedConfig,
//	                      WriteHBA, SetRecovery, SetStandbySignal(true), Start
//	failover:             Promote (then SetRecovery("", "") on the new primary)
//	follow a new primary: SetRecovery(new conninfo, slot), Reload
//	rejoin an old primary: Stop, Rewind (sets standby.signal), WriteManagedConfig,
//	                      WriteHBA, SetRecovery, Start; on ErrRewindImpossible:
//	                      RemoveDataDir, BaseBackup, ...
//	fencing:              Stop(ctx, StopFast) bounded by ctx; Kill as a last resort
//
// pg_basebackup and pg_rewind copy postgresql.conf, the managed include
// files, pg_hba.conf and pg_ident.conf from the source: rewrite them after.
// Passwords never go on a command line: use WritePassfile and a passfile.
package pgctl
