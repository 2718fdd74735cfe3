package pgctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// GateApplicationName is the application_name of the local lease gate's
// replication connection; the primary's synchronous_standby_names names it
// in asynchronous mode.
const GateApplicationName = "hasidecar_gate"

// The lease gate (DESIGN.md, "Lease and fencing", point 3a) is a physical
// replication client of the local Postgres, run inside the guard process.
// In asynchronous mode the primary runs with synchronous_standby_names =
// hasidecar_gate, so every commit (synchronous_commit on, the default)
// waits until the gate reports the commit record flushed. The gate consumes
// the stream without storing it and answers — write = flush = apply = the
// end of the WAL received — only while OK says the lease deadline has not
// passed, checked right before every answer. A backend that was frozen
// with its whole host and runs again after the deadline then waits for a
// gate that refuses, instead of acknowledging a commit the new primary
// never sees; the guard kills Postgres meanwhile.
type Gate struct {
	// Config is a connection to the local Postgres that may use the
	// replication protocol (replication=true is set by the gate).
	Config *pgconn.Config
	// OK tells whether the gate may acknowledge WAL now (the deadline it
	// was given has not passed on CLOCK_MONOTONIC).
	OK     func() bool
	Logger hclog.Logger
	// Retry is the longest pause between connection attempts (default
	// 50 ms); see Run.
	Retry time.Duration
}

// gateFirstRetry is the pause between attempts during the first
// gateQuickFor of an outage: a promotion ends the cascading stream and
// every commit of the new primary waits for the gate's new connection, which
// the server may refuse for a moment while it leaves recovery (measured:
// up to 130 ms on a loaded host), so the attempts stay quick for a while;
// then they double up to Retry while the server keeps refusing (a long
// crash recovery).
const (
	gateFirstRetry = 10 * time.Millisecond
	gateQuickFor   = 500 * time.Millisecond
)

// Run connects, streams and answers until ctx ends, reconnecting after
// every error (Postgres restarting, a promotion ending a cascading stream).
func (g *Gate) Run(ctx context.Context) error {
	longest := g.Retry
	if longest <= 0 {
		longest = 50 * time.Millisecond
	}
	retry := min(gateFirstRetry, longest)
	var lastErr string
	outage := time.Now()
	for {
		began := time.Now()
		err := g.stream(ctx)
		if time.Since(began) > time.Second {
			outage = time.Now() // it streamed: a new outage
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && err.Error() != lastErr {
			g.Logger.Debug("lease gate: stream ended, reconnecting", "error", err)
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
		if time.Since(outage) < gateQuickFor {
			retry = min(gateFirstRetry, longest)
		} else {
			retry = min(2*retry, longest)
		}
	}
}

// stream runs one replication connection.
func (g *Gate) stream(ctx context.Context) error {
	cfg := g.Config.Copy()
	cfg.RuntimeParams["replication"] = "true"
	cfg.RuntimeParams["application_name"] = GateApplicationName
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgconn.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("lease gate: replication connection over %s: %w", cfg.Host, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// Every call below takes ctx: pgconn's context watcher sets a past
	// deadline on the socket when ctx ends, so a blocked ReceiveMessage
	// returns. (Closing the connection from a context.AfterFunc instead
	// raced with ReceiveMessage: a PgConn is not safe for concurrent use.)

	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("lease gate: IDENTIFY_SYSTEM: %w", err)
	}
	if err := startPhysical(ctx, conn, sys.XLogPos, sys.Timeline); err != nil {
		return fmt.Errorf("lease gate: START_REPLICATION at %s on timeline %d: %w", sys.XLogPos, sys.Timeline, err)
	}
	// A stream from a standby (a cascading walsender) carries no commit of
	// that server and ends when a promotion changes the timeline: answer it
	// always, armed or not, or the standby's walsender would wait for the
	// gate (wal_sender_timeout) at every shutdown. Postgres reports
	// in_hot_standby at connection start.
	standby := conn.ParameterStatus("in_hot_standby") == "on"
	g.Logger.Debug("lease gate streaming", "from", sys.XLogPos.String(), "timeline", sys.Timeline, "standby", standby)
	received := sys.XLogPos
	refused := false
	answer := func() error {
		if !standby && !g.OK() {
			if !refused {
				g.Logger.Warn("lease gate: the lease deadline passed: no more acknowledgements", "received", received.String())
				refused = true
			}
			return nil
		}
		if refused {
			g.Logger.Info("lease gate: deadline renewed: acknowledging again", "received", received.String())
			refused = false
		}
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: received, WALFlushPosition: received, WALApplyPosition: received,
		})
	}
	if err := answer(); err != nil {
		return fmt.Errorf("lease gate: status update: %w", err)
	}
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return fmt.Errorf("lease gate: receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("lease gate: parse XLogData: %w", err)
				}
				if end := x.WALStart + pglogrepl.LSN(len(x.WALData)); end > received {
					received = end
				}
				// A commit waits for this answer: reply at once.
				if err := answer(); err != nil {
					return fmt.Errorf("lease gate: status update: %w", err)
				}
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				k, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("lease gate: parse keepalive: %w", err)
				}
				// The server's end of WAL may be past what it sent us
				// (nothing to send): report only what arrived.
				if k.ReplyRequested {
					if err := answer(); err != nil {
						return fmt.Errorf("lease gate: status update: %w", err)
					}
				}
			}
		case *pgproto3.CopyDone:
			return errors.New("lease gate: the server ended the stream (end of timeline)")
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("lease gate: %w", pgconn.ErrorResponseToPgError(msg))
		}
	}
}

// startPhysical sends START_REPLICATION PHYSICAL without a slot (the gate
// keeps no WAL) and waits for the copy-both mode.
func startPhysical(ctx context.Context, conn *pgconn.PgConn, at pglogrepl.LSN, tli int32) error {
	sql := fmt.Sprintf("START_REPLICATION PHYSICAL %s TIMELINE %d", at, tli)
	conn.Frontend().SendQuery(&pgproto3.Query{String: sql})
	if err := conn.Frontend().Flush(); err != nil {
		return err
	}
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return nil
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		}
	}
}
