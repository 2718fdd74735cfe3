package pgctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Slot is a physical replication slot.
type Slot struct {
	Name       string
	Active     bool
	RestartLSN uint64
	WalStatus  string // reserved | extended | unreserved | lost ("" if none)
}

var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func checkSlotName(name string) error {
	if !slotNameRE.MatchString(name) {
		return fmt.Errorf("invalid replication slot name %q: use 1-63 lower-case letters, digits and _", name)
	}
	return nil
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// EnsureSlot creates a physical slot that reserves WAL at once. An existing
// slot (also one created concurrently) is success with created false.
func (c *Controller) EnsureSlot(ctx context.Context, name string) (created bool, err error) {
	if err := checkSlotName(name); err != nil {
		return false, err
	}
	err = c.withConn(ctx, false, func(conn *pgx.Conn) error {
		created = false
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, name).Scan(&exists); err != nil || exists {
			return err
		}
		_, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, name)
		if pgCode(err) == "42710" { // duplicate_object: created meanwhile
			return nil
		}
		created = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("creating replication slot %s: %w", name, err)
	}
	if created {
		c.log.Info("created replication slot", "slot", name)
	}
	return created, nil
}

// DropSlot drops a slot; a missing slot is success with dropped false. The
// walsender of an active slot is terminated first.
func (c *Controller) DropSlot(ctx context.Context, name string) (dropped bool, err error) {
	if err := checkSlotName(name); err != nil {
		return false, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var inUse bool
		err = c.withConn(ctx, false, func(conn *pgx.Conn) error {
			inUse = false
			var pid *int32
			err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&pid)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			if pid != nil {
				c.log.Info("terminating the walsender of a slot before dropping it", "slot", name, "pid", *pid)
				if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, *pid); err != nil {
					return err
				}
			}
			_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, name)
			switch pgCode(err) {
			case "42704": // undefined_object: dropped meanwhile
				return nil
			case "55006": // object_in_use: the walsender re-acquired it / not gone yet
				inUse = true
				return nil
			}
			dropped = err == nil
			return err
		})
		if err != nil {
			return false, fmt.Errorf("dropping replication slot %s: %w", name, err)
		}
		if !inUse {
			break
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("dropping replication slot %s: still in use after terminating its walsender", name)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("dropping replication slot %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if dropped {
		c.log.Info("dropped replication slot", "slot", name)
	}
	return dropped, nil
}

// ListSlots lists the physical replication slots.
func (c *Controller) ListSlots(ctx context.Context) ([]Slot, error) {
	var slots []Slot
	err := c.withConn(ctx, true, func(conn *pgx.Conn) error {
		slots = nil
		rows, err := conn.Query(ctx, `SELECT slot_name::text, active, coalesce(restart_lsn::text, ''), coalesce(wal_status, '')
			FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s Slot
			var lsn string
			if err := rows.Scan(&s.Name, &s.Active, &lsn, &s.WalStatus); err != nil {
				return err
			}
			if s.RestartLSN, err = parseLSNOrZero(lsn); err != nil {
				return err
			}
			slots = append(slots, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing replication slots: %w", err)
	}
	return slots, nil
}

// Promote ends recovery: pg_promote(wait => true) and a check that
// pg_is_in_recovery() is false; then a CHECKPOINT, so that pg_control (and
// with it pg_rewind against this server, and pg_controldata) shows the new
// timeline at once. Already a primary: no-op.
func (c *Controller) Promote(ctx context.Context) error {
	var inRecovery bool
	if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`, nil, &inRecovery); err != nil {
		return fmt.Errorf("promoting: %w", err)
	}
	if !inRecovery {
		c.log.Info("promote: already a primary")
		return nil
	}
	// pg_promote(wait => true) checks every 100 ms; asking without waiting
	// and polling every 10 ms answers up to ~90 ms sooner, which is part
	// of every failover's write gap.
	start := time.Now()
	var asked bool
	if err := c.QueryRow(ctx, `SELECT pg_promote(wait => false)`, nil, &asked); err != nil {
		return fmt.Errorf("promoting (pg_promote): %w", err)
	}
	if !asked {
		return errors.New("promoting: pg_promote refused to signal the startup process")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`, nil, &inRecovery)
		if err == nil && !inRecovery {
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if err == nil {
				err = errors.New("still in recovery")
			}
			return fmt.Errorf("promoting: not promoted after %s: %w", time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.endGateStream(ctx)
	// No CHECKPOINT here: the caller runs one in the background (a later
	// pg_rewind from this node needs pg_control to show the new timeline,
	// and Rewind checkpoints the source itself too).
	c.log.Info("promoted", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// endGateStream ends the lease gate's replication stream from this server
// right after a promotion. Until then it was a cascading walsender on the
// old timeline, which notices the promotion only when it next wakes for new
// WAL: after the end-of-recovery checkpoint, 0.2 s and more later. Every
// commit of the new primary waits for the gate (synchronous_standby_names),
// so that wait was part of every failover's write gap. Terminated, the gate
// reconnects on the new timeline within its first retry (10 ms). Safe: the
// gate acknowledges nothing it is not allowed to; commits only wait a
// little. A failure is only logged: the stream then ends as before.
func (c *Controller) endGateStream(ctx context.Context) {
	var n int64
	err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE backend_type = 'walsender' AND application_name = $1`,
		[]any{GateApplicationName}, &n)
	if err != nil {
		c.log.Debug("end the lease gate's stream after the promotion", "error", err)
		return
	}
	c.log.Debug("ended the lease gate's stream after the promotion", "walsenders", n)
}

// Checkpoint runs CHECKPOINT.
func (c *Controller) Checkpoint(ctx context.Context) error {
	if err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// TerminateBackends terminates every client backend except our own
// connection and waits (up to 5 s each) until they are gone. It never
// cancels: a cancelled commit waiting for a synchronous standby is reported
// to its client as committed.
func (c *Controller) TerminateBackends(ctx context.Context) error {
	var total, done int64
	err := c.withConn(ctx, false, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE t)
			FROM (SELECT pg_terminate_backend(pid, 5000) AS t FROM pg_stat_activity
			      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) s`).Scan(&total, &done)
	})
	if err != nil {
		return fmt.Errorf("terminating client backends: %w", err)
	}
	c.log.Info("terminated client backends", "count", total)
	if done < total {
		return fmt.Errorf("terminating client backends: %d of %d still running after 5s", total-done, total)
	}
	return nil
}

// TimelineHistory returns the contents of pg_wal/<tli>.history ("" for
// timeline 1, which has none), read from the data directory.
func (c *Controller) TimelineHistory(ctx context.Context, tli uint32) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if tli <= 1 {
		return "", nil
	}
	p := filepath.Join(c.opts.DataDir, "pg_wal", fmt.Sprintf("%08X.history", tli))
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("reading timeline %d history: %w", tli, err)
	}
	return string(b), nil
}
