package pgctl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connectTimeout bounds one connection attempt over the unix socket.
const connectTimeout = 3 * time.Second

// ConnConfig is the pgx configuration this Controller uses: the unix socket
// in SocketDir, the superuser, database postgres.
func (c *Controller) ConnConfig() (*pgx.ConnConfig, error) {
	cfg, err := (Conninfo{
		"host":             c.opts.SocketDir,
		"port":             strconv.Itoa(c.opts.Port),
		"user":             c.opts.Superuser,
		"dbname":           "postgres",
		"sslmode":          "disable",
		"application_name": "hasidecar",
		"connect_timeout":  strconv.Itoa(int(connectTimeout / time.Second)),
	}).PgxConfig()
	if err != nil {
		return nil, fmt.Errorf("building connection config: %w", err)
	}
	return cfg, nil
}

func (c *Controller) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := c.ConnConfig()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// acquire takes the cached connection (or makes one); the caller has it
// exclusively until release. fresh tells whether it was just opened.
func (c *Controller) acquire(ctx context.Context) (conn *pgx.Conn, gen uint64, fresh bool, err error) {
	c.connMu.Lock()
	conn, gen = c.conn, c.connGen
	c.conn = nil
	c.connMu.Unlock()
	if conn != nil && !conn.IsClosed() {
		return conn, gen, false, nil
	}
	if conn != nil {
		closeQuietly(conn)
	}
	conn, err = c.connect(ctx)
	if err != nil {
		if !c.Running() && c.ForeignPostmaster() == 0 {
			return nil, gen, true, fmt.Errorf("%w (connecting over %s: %v)", ErrNotRunning, c.opts.SocketDir, err)
		}
		return nil, gen, true, fmt.Errorf("connecting to postgres over %s as %s: %w", c.opts.SocketDir, c.opts.Superuser, err)
	}
	return conn, gen, true, nil
}

// release puts conn back as the cached connection unless it is broken, the
// cache was invalidated meanwhile, or another connection got cached.
func (c *Controller) release(conn *pgx.Conn, gen uint64, err error) {
	var pgErr *pgconn.PgError
	if conn.IsClosed() || (err != nil && !errors.As(err, &pgErr)) || conn.PgConn().TxStatus() != 'I' {
		closeQuietly(conn)
		return
	}
	c.connMu.Lock()
	if c.conn == nil && c.connGen == gen {
		c.conn = conn
		conn = nil
	}
	c.connMu.Unlock()
	if conn != nil {
		closeQuietly(conn)
	}
}

// closeConn drops the cached connection without blocking on it.
func (c *Controller) closeConn() {
	c.connMu.Lock()
	conn := c.conn
	c.conn = nil
	c.connGen++
	c.connMu.Unlock()
	if conn != nil {
		closeQuietly(conn)
	}
}

func closeQuietly(conn *pgx.Conn) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	}()
}

// withConn runs fn on the cached connection. When fn fails because a cached
// connection turned out dead, it reconnects and runs fn once more if
// readOnly or if nothing reached the server.
func (c *Controller) withConn(ctx context.Context, readOnly bool, fn func(*pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
		conn, gen, fresh, err := c.acquire(ctx)
		if err != nil {
			return err
		}
		err = fn(conn)
		c.release(conn, gen, err)
		var pgErr *pgconn.PgError
		if err != nil && attempt == 0 && !fresh && ctx.Err() == nil && !errors.As(err, &pgErr) &&
			(readOnly || pgconn.SafeToRetry(err)) {
			c.log.Debug("cached connection failed, reconnecting", "error", err)
			continue
		}
		return err
	}
}

// WithConn runs fn with exclusive use of a connection to the local Postgres
// (superuser, unix socket). fn must not keep conn.
func (c *Controller) WithConn(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	return c.withConn(ctx, false, fn)
}

// Exec runs one statement on the local Postgres.
func (c *Controller) Exec(ctx context.Context, sql string, args ...any) error {
	return c.withConn(ctx, false, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// QueryRow runs a query returning one row and scans it into dest. It is
// retried once on a dead cached connection, so use it for reads.
func (c *Controller) QueryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	return c.withConn(ctx, true, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql, args...).Scan(dest...)
	})
}

// CurrentSetting is current_setting(name) as a session of the sidecar
// sees it (after a reload, once the postmaster signalled the backends).
func (c *Controller) CurrentSetting(ctx context.Context, name string) (string, error) {
	var v string
	if err := c.QueryRow(ctx, "SELECT current_setting($1)", []any{name}, &v); err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return v, nil
}

// probe tries to connect: ready is true once the server accepts
// connections, even if it then refuses our login (err tells why).
func (c *Controller) probe(ctx context.Context) (ready bool, err error) {
	conn, err := c.connect(ctx)
	if err == nil {
		c.connMu.Lock()
		gen := c.connGen
		c.connMu.Unlock()
		c.release(conn, gen, nil)
		return true, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "57P03" { // cannot_connect_now: starting up / not yet consistent
			return false, err
		}
		return true, err
	}
	return false, err
}
