package pgctl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// refuseRunning errors when a postmaster (ours or foreign) runs on DataDir.
func (c *Controller) refuseRunning(what string) error {
	if c.Running() {
		return fmt.Errorf("%s: refusing: %w (pid %d); stop it first", what, ErrRunning, c.PID())
	}
	if pid, alive := c.postmasterPID(); alive {
		return fmt.Errorf("%s: refusing: %w (a postmaster hasidecar did not start, pid %d); stop it first", what, ErrRunning, pid)
	}
	return nil
}

func refusePassword(what string, conninfo Conninfo) error {
	if conninfo["password"] != "" || hasPassword(conninfo.String()) {
		return fmt.Errorf("%s: the connection string holds a password, which would be visible on the command line to every local user: put it in a password file (WritePassfile) and pass that instead", what)
	}
	return nil
}

// BaseBackup clones the source server (a libpq conninfo, without password;
// give passfile for one) into the missing or empty data directory with
// pg_basebackup -X stream -c fast, using replication slot slot (which must
// already exist on the source) when non-empty. On failure the data directory
// is left empty. The config files are the source's afterwards: rewrite them
// (WriteManagedConfig, WriteHBA, SetRecovery, SetStandbySignal).
func (c *Controller) BaseBackup(ctx context.Context, source Conninfo, slot, passfile string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	what := "pg_basebackup from " + redact(source.String())
	if err := refusePassword(what, source); err != nil {
		return err
	}
	if slot != "" {
		if err := checkSlotName(slot); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := c.refuseRunning(what); err != nil {
		return err
	}
	state, err := c.InspectDataDir(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch state {
	case DataDirMissing, DataDirEmpty:
	case DataDirIncomplete:
		if err := c.discardIncomplete(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	default:
		return fmt.Errorf("%s: refusing: %s already holds a %s data directory (%w); nothing was changed (RemoveDataDir moves it aside)", what, c.opts.DataDir, state, ErrDataDirNotEmpty)
	}
	if err := c.PrepareDirs(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := c.markIncomplete("pg_basebackup"); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	args := []string{"-D", c.opts.DataDir, "-d", source.String(), "-X", "stream", "-c", "fast", "--no-password", "-P", "-v"}
	if slot != "" {
		args = append(args, "-S", slot)
	}
	start := time.Now()
	_, err = c.run(ctx, runSpec{name: "pg_basebackup", args: args, passfile: passfile, progress: true})
	if err != nil {
		c.emptyDataDir()
		c.clearIncomplete()
		return fmt.Errorf("%s: %w", what, err)
	}
	c.clearIncomplete()
	c.log.Info("base backup done", "source", redact(source.String()), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// rewindImpossible are pg_rewind messages after which retrying cannot help:
// the caller should re-clone.
var rewindImpossible = regexp.MustCompile(`(?i)same timeline|could not find previous WAL record|could not read WAL record|could not find common ancestor|from different systems|data checksums or .wal_log_hints|not compatible with this version`)

// rewindModifying: once pg_rewind printed one of these it has started to
// change the target; a failure after that leaves it inconsistent.
var rewindModifying = regexp.MustCompile(`(?i)need to copy|creating backup label|syncing target data directory`)

// Rewind runs pg_rewind -D DataDir --source-server=source --progress, with
// Postgres stopped (it refuses otherwise). A copy of global/pg_control is
// saved first to DataDir+".pg_control.before-rewind" for diagnosis. A
// CHECKPOINT is attempted on the source first, so that its pg_control shows
// its current timeline (Postgres 15's pg_rewind reads the timeline from
// there, and it lags after a promotion). The error wraps ErrRewindImpossible
// when a rewind cannot work (same timeline per pg_control, WAL needed from
// the target is gone, different systems, or pg_rewind failed midway) so the
// caller can re-clone. On success standby.signal is set: a rewound data
// directory must start as a standby. Rewrite the config files afterwards
// (pg_rewind copies them from the source).
func (c *Controller) Rewind(ctx context.Context, source Conninfo, passfile string) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	what := "pg_rewind from " + redact(source.String())
	if err := refusePassword(what, source); err != nil {
		return err
	}
	if err := c.refuseRunning(what); err != nil {
		return err
	}
	state, err := c.InspectDataDir(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if state == DataDirIncomplete {
		return fmt.Errorf("%s: %w: data directory %s holds the remains of an interrupted %s; re-clone", what, ErrRewindImpossible, c.opts.DataDir, c.incompleteOp())
	}
	if state != DataDirValid {
		return fmt.Errorf("%s: data directory %s is %s; nothing to rewind", what, c.opts.DataDir, state)
	}
	backup := c.opts.DataDir + ".pg_control.before-rewind"
	if err := copyFile(filepath.Join(c.opts.DataDir, "global", "pg_control"), backup); err != nil {
		return fmt.Errorf("%s: saving pg_control: %w", what, err)
	}
	c.checkpointSource(ctx, source, passfile)
	if err := c.markIncomplete("pg_rewind"); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}

	var mu sync.Mutex
	var impossible, modifying []string
	start := time.Now()
	_, err = c.run(ctx, runSpec{name: "pg_rewind", passfile: passfile, progress: true,
		args: []string{"-D", c.opts.DataDir, "--source-server=" + source.String(), "--progress"},
		onStderr: func(line string) {
			mu.Lock()
			defer mu.Unlock()
			if rewindImpossible.MatchString(line) {
				impossible = append(impossible, line)
			}
			if rewindModifying.MatchString(line) {
				modifying = append(modifying, line)
			}
		}})
	mu.Lock()
	defer mu.Unlock()
	if err == nil || len(modifying) == 0 {
		c.clearIncomplete() // succeeded, or failed before touching the directory
	}
	switch {
	case len(impossible) > 0 && err == nil && strings.Contains(strings.ToLower(impossible[0]), "same timeline"):
		return fmt.Errorf("%s: %w: %w: %s — nothing was rewound: if the source was just promoted it must checkpoint first; if this node never diverged it can start as a standby without a rewind; otherwise re-clone",
			what, ErrSameTimeline, ErrRewindImpossible, redact(impossible[0]))
	case len(impossible) > 0 && err == nil:
		return fmt.Errorf("%s: %w: %s — nothing was rewound: if the source was just promoted it must checkpoint first; if this node never diverged it can start as a standby without a rewind; otherwise re-clone",
			what, ErrRewindImpossible, redact(impossible[0]))
	case len(impossible) > 0:
		return fmt.Errorf("%s: %w: %w (pg_control before the rewind: %s)", what, ErrRewindImpossible, err, backup)
	case err != nil && len(modifying) > 0:
		return fmt.Errorf("%s: %w: it failed after it began to change the data directory, which is now inconsistent (marked %s); re-clone: %w (pg_control before the rewind: %s)", what, ErrRewindImpossible, c.markerPath(), err, backup)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, err := c.SetStandbySignal(true); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.log.Info("rewind done", "source", redact(source.String()), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkpointSource makes the source's pg_control current (best effort).
// pg_rewind needs a superuser (or a role allowed to CHECKPOINT) anyway.
func (c *Controller) checkpointSource(ctx context.Context, source Conninfo, passfile string) {
	if passfile != "" && source["passfile"] == "" {
		source = source.With("passfile", passfile)
	}
	cfg, err := source.PgxConfig()
	if err != nil {
		c.log.Warn("cannot checkpoint the rewind source (pg_rewind may see a stale timeline)", "error", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		c.log.Warn("cannot connect to the rewind source to checkpoint it (pg_rewind may see a stale timeline)", "error", redact(err.Error()))
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(cctx, "CHECKPOINT"); err != nil {
		c.log.Warn("checkpoint on the rewind source failed (pg_rewind may see a stale timeline)", "error", err)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, b, 0o600, nil)
}
