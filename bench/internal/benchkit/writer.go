package benchkit

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// TableName is the table the writer inserts into.
const TableName = "hasidecar_bench"

// CreateTableSQL creates the writer's table (run it on the primary).
const CreateTableSQL = "CREATE TABLE IF NOT EXISTS " + TableName +
	" (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"

const insertSQL = "INSERT INTO " + TableName + " DEFAULT VALUES RETURNING id, inet_server_port()"

// Sample is one successful INSERT: when it completed (as this process saw
// it), the Postgres port that answered it and the row's id.
type Sample struct {
	At   time.Time
	Port int
	ID   int64
}

// Failure is one failed connection attempt or INSERT.
type Failure struct {
	At  time.Time
	Op  string // connect or insert
	Err string
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// DSN is the libpq string, normally the lab's multi-host read-write one;
	// Config, when set, is used instead (Env.ConnConfig: a lab with network
	// namespaces).
	DSN    string
	Config *pgx.ConnConfig
	// Rate is INSERTs per second; 0 is as fast as one connection goes.
	Rate float64
	// StatementTimeout bounds one INSERT (default 5 s); ConnectTimeout one
	// connection attempt over all hosts (default 10 s).
	StatementTimeout time.Duration
	ConnectTimeout   time.Duration
	// RetryPause is the pause after a failure before the next attempt
	// (default 10 ms).
	RetryPause time.Duration
}

// Writer INSERTs one row at a time through one connection; on any error it
// closes the connection and connects again, and it records every success.
type Writer struct {
	o      WriterOptions
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	samples  []Sample
	failures []Failure
}

// StartWriter starts a writer that runs until Stop or ctx ends.
func StartWriter(ctx context.Context, o WriterOptions) *Writer {
	if o.StatementTimeout == 0 {
		o.StatementTimeout = 5 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.RetryPause == 0 {
		o.RetryPause = 10 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Writer{o: o, cancel: cancel, done: make(chan struct{})}
	Go(func() {
		defer close(w.done)
		w.run(ctx)
	})
	return w
}

// Stop ends the writer and waits for it.
func (w *Writer) Stop() {
	w.cancel()
	<-w.done
}

func (w *Writer) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	var interval time.Duration
	if w.o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / w.o.Rate)
	}
	next := time.Now()
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, w.o.ConnectTimeout)
			c, err := w.connect(cctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				w.fail("connect", err)
				_ = Sleep(ctx, w.o.RetryPause)
				continue
			}
			conn = c
		}
		if interval > 0 {
			now := time.Now()
			if next.Before(now.Add(-interval)) {
				next = now // fell behind (an outage): do not burst
			}
			if d := next.Sub(now); d > 0 && Sleep(ctx, d) != nil {
				return
			}
			next = next.Add(interval)
		}
		sctx, cancel := context.WithTimeout(ctx, w.o.StatementTimeout)
		var port int
		var id int64
		err := conn.QueryRow(sctx, insertSQL).Scan(&id, &port)
		at := time.Now()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail("insert", err)
			closeConn(conn)
			conn = nil
			_ = Sleep(ctx, w.o.RetryPause)
			continue
		}
		w.mu.Lock()
		w.samples = append(w.samples, Sample{At: at, Port: port, ID: id})
		w.mu.Unlock()
	}
}

func (w *Writer) connect(ctx context.Context) (*pgx.Conn, error) {
	if w.o.Config != nil {
		return pgx.ConnectConfig(ctx, w.o.Config.Copy())
	}
	return pgx.Connect(ctx, w.o.DSN)
}

func (w *Writer) fail(op string, err error) {
	w.mu.Lock()
	w.failures = append(w.failures, Failure{At: time.Now(), Op: op, Err: err.Error()})
	w.mu.Unlock()
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// Samples is a copy of the successes so far, oldest first.
func (w *Writer) Samples() []Sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Sample(nil), w.samples...)
}

// Failures is a copy of the failures so far, oldest first.
func (w *Writer) Failures() []Failure {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Failure(nil), w.failures...)
}

// Counts are the numbers of successes and failures so far.
func (w *Writer) Counts() (ok, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.samples), len(w.failures)
}

// WaitFor waits until a success completed after since satisfies match, and
// returns the first such one.
func (w *Writer) WaitFor(ctx context.Context, since time.Time, match func(Sample) bool) (Sample, error) {
	from := 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		for ; from < len(w.samples); from++ {
			if s := w.samples[from]; s.At.After(since) && match(s) {
				w.mu.Unlock()
				return s, nil
			}
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// Between are the successes that completed in [from, to].
func Between(samples []Sample, from, to time.Time) []Sample {
	i := sort.Search(len(samples), func(i int) bool { return !samples[i].At.Before(from) })
	j := sort.Search(len(samples), func(i int) bool { return samples[i].At.After(to) })
	if i >= j {
		return nil
	}
	return samples[i:j]
}

// Gap is the longest interval between two consecutive successes.
type Gap struct {
	Length    time.Duration
	From, To  time.Time // the successes on either side
	FromPort  int
	ToPort    int
	Successes int // in the window examined
}

// LongestGap finds the longest interval between two consecutive successes
// among samples (ordered by completion time); it needs at least two.
func LongestGap(samples []Sample) (Gap, error) {
	if len(samples) < 2 {
		return Gap{}, fmt.Errorf("only %d successful INSERTs in the window: no interval to measure", len(samples))
	}
	g := Gap{Successes: len(samples)}
	for i := 1; i < len(samples); i++ {
		if d := samples[i].At.Sub(samples[i-1].At); d > g.Length {
			g.Length, g.From, g.To = d, samples[i-1].At, samples[i].At
			g.FromPort, g.ToPort = samples[i-1].Port, samples[i].Port
		}
	}
	return g, nil
}

// DistinctPorts are the ports that answered the samples, in order of first
// appearance.
func DistinctPorts(samples []Sample) []int {
	seen := map[int]bool{}
	var out []int
	for _, s := range samples {
		if !seen[s.Port] {
			seen[s.Port] = true
			out = append(out, s.Port)
		}
	}
	return out
}
