package integration

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// probeRecord is one successful local write on one node.
type probeRecord struct {
	node       string
	call, done time.Time
}

// prober writes to every data node directly, every 50 ms, with
// synchronous_commit=local: a success means that node accepted a write at
// that moment. check() then asserts the invariant of the failover tests: at
// most one node accepts writes at any moment, and once a node has taken
// over, the earlier one never accepts a write again.
type prober struct {
	c      *cluster
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     []probeRecord
	tries  map[string]int
}

// startProber creates the probe table on the primary and probes all data
// nodes until stop.
func (c *cluster) startProber(primary string) *prober {
	c.t.Helper()
	c.exec(primary, "CREATE TABLE IF NOT EXISTS probe (node text, at timestamptz DEFAULT clock_timestamp())")
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{c: c, cancel: cancel, tries: map[string]int{}}
	for _, n := range c.lab.DataNodes() {
		p.wg.Add(1)
		go p.loop(ctx, n.Name)
	}
	c.t.Cleanup(p.stop)
	return p
}

func (p *prober) loop(ctx context.Context, name string) {
	defer p.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := p.c.connectDSN(cctx, p.c.dsn(name)+" options='-c synchronous_commit=local'")
			cancel()
			if err == nil {
				conn = c
			}
		}
		if conn != nil {
			call := time.Now()
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := conn.Exec(qctx, "INSERT INTO probe (node) VALUES ($1)", name)
			cancel()
			done := time.Now()
			p.mu.Lock()
			p.tries[name]++
			if err == nil {
				p.ok = append(p.ok, probeRecord{node: name, call: call, done: done})
			}
			p.mu.Unlock()
			if err != nil && (conn.IsClosed() || !strings.Contains(err.Error(), "read-only")) {
				_ = conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *prober) stop() {
	p.cancel()
	p.wg.Wait()
}

// check stops the prober and asserts: no two nodes' successful writes
// overlap in time, and the sequence of writable nodes, in time order, never
// returns to an earlier node (A…A B…B is fine; A B A is two primaries) —
// or, when expected is given (switchovers back and forth), is exactly
// expected. It returns the order of writable nodes seen.
func (p *prober) check(t *testing.T, expected ...string) []string {
	t.Helper()
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	order, problems := probeViolations(p.ok, expected)
	for _, pr := range problems {
		t.Error(pr)
	}
	t.Logf("prober: %d writes accepted; writable nodes in order: %v; attempts %v", len(p.ok), order, p.tries)
	return order
}

// probeViolations is the prober's checker, on any history (tested on
// fabricated ones in checkers_test.go).
func probeViolations(ok []probeRecord, expected []string) (order, problems []string) {
	recs := append([]probeRecord(nil), ok...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].done.Before(recs[j].done) })
	for i, r := range recs {
		if len(order) == 0 || order[len(order)-1] != r.node {
			if len(expected) == 0 && slices.Contains(order, r.node) {
				problems = append(problems, fmt.Sprintf("two writable primaries: %s accepted a write at %s after %s had taken over (order %v)",
					r.node, r.done.Format("15:04:05.000"), order[len(order)-1], append(order, r.node)))
			}
			order = append(order, r.node)
		}
		for _, q := range recs[i+1:] {
			if q.call.After(r.done) {
				break
			}
			if q.node != r.node {
				problems = append(problems, fmt.Sprintf("writes accepted at the same moment on %s [%s–%s] and %s [%s–%s]", r.node,
					r.call.Format("15:04:05.000"), r.done.Format("15:04:05.000"), q.node, q.call.Format("15:04:05.000"), q.done.Format("15:04:05.000")))
			}
		}
	}
	if len(expected) > 0 && fmt.Sprint(order) != fmt.Sprint(expected) {
		problems = append(problems, fmt.Sprintf("writable nodes in order %v, want %v", order, expected))
	}
	return order, problems
}

// writer inserts ids through the multi-host read-write connection string,
// as an application would; acked are the ids whose INSERT returned success.
type writer struct {
	c      *cluster
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	next   int
	acked  []int
	ackAt  []time.Time // when each acked id returned
	// cancelledWaits counts "canceling wait for synchronous replication"
	// warnings (see loop).
	cancelledWaits int
}

func (c *cluster) startWriter(primary string) *writer {
	c.t.Helper()
	c.exec(primary, "CREATE TABLE IF NOT EXISTS acked (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{c: c, cancel: cancel}
	w.wg.Add(1)
	go w.loop(ctx)
	c.t.Cleanup(w.stop)
	return w
}

func (w *writer) loop(ctx context.Context) {
	defer w.wg.Done()
	var conn *pgx.Conn
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := w.c.connectWith(cctx, w.c.lab.MultiHostDSN(""), func(cfg *pgx.ConnConfig) {
				// CHAOS.md: a commit whose wait for synchronous replication
				// was cancelled returns success with this warning; it is
				// not an acknowledgement.
				cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
					if strings.Contains(n.Message, "canceling wait for synchronous replication") {
						w.mu.Lock()
						w.cancelledWaits++
						w.mu.Unlock()
					}
				}
			})
			cancel()
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			conn = c
		}
		w.mu.Lock()
		w.next++
		id := w.next
		w.mu.Unlock()
		w.mu.Lock()
		cancelled := w.cancelledWaits
		w.mu.Unlock()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(qctx, "INSERT INTO acked (id) VALUES ($1)", id)
		cancel()
		w.mu.Lock()
		indeterminate := w.cancelledWaits != cancelled
		w.mu.Unlock()
		if err != nil || indeterminate {
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		w.mu.Lock()
		w.acked = append(w.acked, id)
		w.ackAt = append(w.ackAt, time.Now())
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	if conn != nil {
		_ = conn.Close(context.Background())
	}
}

func (w *writer) stop() {
	w.cancel()
	w.wg.Wait()
}

// longestGap is the longest time without an acknowledged write between
// from and to (the write unavailability a client saw).
func (w *writer) longestGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, at := range w.ackAt {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// lastAck is when the latest acknowledged write returned.
func (w *writer) lastAck() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ackAt) == 0 {
		return time.Time{}
	}
	return w.ackAt[len(w.ackAt)-1]
}

// ackedAround splits the acknowledged ids into those acknowledged before at
// and the others.
func (w *writer) ackedAround(at time.Time) (before, after []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, id := range w.acked {
		if w.ackAt[i].Before(at) {
			before = append(before, id)
		} else {
			after = append(after, id)
		}
	}
	return before, after
}

func (w *writer) ackedIDs() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.acked...)
}

// waitCaughtUp waits until every running standby has replayed the
// primary's current WAL position.
func (c *cluster) waitCaughtUp(primary string, standbys ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, primary)
	if err != nil {
		c.t.Fatal(err)
	}
	var lsn string
	err = conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	_ = conn.Close(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, s := range standbys {
		eventually(c.t, 15*time.Second, s+" replays "+lsn, func() string {
			n, err := c.queryInt(s, "SELECT CASE WHEN pg_last_wal_replay_lsn() >= $1::pg_lsn THEN 1 ELSE 0 END", lsn)
			if err != nil {
				return err.Error()
			}
			if n != 1 {
				return "behind"
			}
			return ""
		})
	}
}

// assertHas fails unless every id is in table acked on the node.
func (c *cluster) assertHas(node string, ids []int) {
	c.t.Helper()
	if len(ids) == 0 {
		c.t.Fatal("no acknowledged writes to check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, node)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var missing []int
	rows, err := conn.Query(ctx, "SELECT want FROM unnest($1::int[]) AS want WHERE NOT EXISTS (SELECT 1 FROM acked WHERE id = want)", ids)
	if err != nil {
		c.t.Fatal(err)
	}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			c.t.Fatal(err)
		}
		missing = append(missing, id)
	}
	if err := rows.Err(); err != nil {
		c.t.Fatal(err)
	}
	if len(missing) > 0 {
		c.t.Fatalf("%d of %d acknowledged writes missing on %s: %v", len(missing), len(ids), node, firstN(missing, 20))
	}
	c.t.Logf("all %d acknowledged writes are on %s", len(ids), node)
}

func firstN(v []int, n int) string {
	if len(v) > n {
		return fmt.Sprint(v[:n]) + "…"
	}
	return fmt.Sprint(v)
}

// lastAccepted is when a node last accepted a probe write (zero if never).
func (p *prober) lastAccepted(node string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last time.Time
	for _, r := range p.ok {
		if r.node == node && r.done.After(last) {
			last = r.done
		}
	}
	return last
}
