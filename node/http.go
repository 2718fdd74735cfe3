package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

type metrics struct {
	reg           *prometheus.Registry
	leaderChanges prometheus.Counter
	promotions    prometheus.Counter
	fences        prometheus.Counter
	raftLeader    prometheus.Gauge
	term          prometheus.Gauge
	pgRunning     prometheus.Gauge
	pgPrimary     prometheus.Gauge
	lagBytes      prometheus.Gauge
	timeline      prometheus.Gauge
	certExpiry    prometheus.Gauge
	certOnce      sync.Once
	// data nodes only
	dataFree, dataTotal prometheus.Gauge
	diskFull            prometheus.Gauge
}

func newMetrics(n *Node) *metrics {
	labels := prometheus.Labels{"cluster": n.cfg.Cluster, "node": n.cfg.Name}
	m := &metrics{
		reg:           prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "hasidecar_raft_leadership_acquired_total", Help: "Times this node became the Raft leader.", ConstLabels: labels}),
		promotions:    prometheus.NewCounter(prometheus.CounterOpts{Name: "hasidecar_promotions_total", Help: "Promotions of the local Postgres performed by this sidecar.", ConstLabels: labels}),
		fences:        prometheus.NewCounter(prometheus.CounterOpts{Name: "hasidecar_fences_total", Help: "Times this sidecar fenced its Postgres.", ConstLabels: labels}),
		raftLeader:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_raft_leader", Help: "1 when this node is the Raft leader.", ConstLabels: labels}),
		term:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_voting_term", Help: "The cluster's promotion term as applied here.", ConstLabels: labels}),
		pgRunning:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_postgres_running", Help: "1 when the local Postgres answers.", ConstLabels: labels}),
		pgPrimary:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_postgres_primary", Help: "1 when the local Postgres is out of recovery.", ConstLabels: labels}),
		lagBytes:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_replay_lsn", Help: "Replay (standby) or current (primary) WAL position of the local Postgres, in bytes.", ConstLabels: labels}),
		timeline:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_postgres_timeline", Help: "Timeline of the local Postgres.", ConstLabels: labels}),
		certExpiry:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_tls_cert_expiry_timestamp_seconds", Help: "When this sidecar's TLS certificate expires (Unix time; absent with tls.mode off).", ConstLabels: labels}),
	}
	m.reg.MustRegister(m.leaderChanges, m.promotions, m.fences, m.raftLeader, m.term, m.pgRunning, m.pgPrimary, m.lagBytes, m.timeline)
	if n.cfg.Postgres != nil {
		m.dataFree = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_data_dir_free_bytes", Help: "Free bytes (for the postgres user) on the filesystem of the data directory.", ConstLabels: labels})
		m.dataTotal = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_data_dir_total_bytes", Help: "Size in bytes of the filesystem of the data directory.", ConstLabels: labels})
		m.diskFull = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_disk_full", Help: "1 when the data directory's (or pg_wal's) filesystem has less free space than postgres.disk_full_threshold, or a write failed for lack of space.", ConstLabels: labels})
		m.reg.MustRegister(m.dataFree, m.dataTotal, m.diskFull)
	}
	return m
}

func (m *metrics) observe(r *pb.NodeReport) {
	m.raftLeader.Set(b2f(r.RaftState == raft.Leader.String()))
	pg := r.GetPostgres()
	m.pgRunning.Set(b2f(pg.GetRunning()))
	m.pgPrimary.Set(b2f(pg.GetRunning() && !pg.GetInRecovery()))
	m.timeline.Set(float64(pg.GetTimeline()))
	if m.dataFree != nil && pg.GetTotalBytes() > 0 {
		m.dataFree.Set(float64(pg.GetFreeBytes()))
		m.dataTotal.Set(float64(pg.GetTotalBytes()))
	}
	if m.diskFull != nil {
		m.diskFull.Set(b2f(pg.GetDiskFull()))
	}
	if pg.GetInRecovery() {
		m.lagBytes.Set(float64(pg.GetReplayLsn()))
	} else {
		m.lagBytes.Set(float64(pg.GetCurrentLsn()))
	}
}

// setCertExpiry publishes the certificate's end (registered on first use,
// so a node with tls.mode off has no such series).
func (m *metrics) setCertExpiry(t time.Time) {
	m.certOnce.Do(func() { m.reg.MustRegister(m.certExpiry) })
	m.certExpiry.Set(float64(t.Unix()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (n *Node) startHTTP() error {
	ln, err := net.Listen("tcp", n.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w (is another process using the port?)", n.cfg.HTTP.Listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/primary", n.handlePrimary)
	mux.HandleFunc("/replica", n.handleReplica)
	mux.HandleFunc("/health", n.handleHealth)
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.goLoop(func() {
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "error", err)
		}
	})
	return nil
}

// stopHTTP stops the HTTP server (a second call returns at once), so that
// its goroutine ends before the shutdown waits for every loop.
func (n *Node) stopHTTP() {
	if n.http == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.http.Shutdown(ctx)
}

type healthBody struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Term     uint64 `json:"term"`
	Postgres string `json:"postgres"`
	Reason   string `json:"reason,omitempty"`
}

func (n *Node) healthBody() healthBody {
	st := n.fsm.State()
	b := healthBody{Name: n.cfg.Name, Term: st.Term, Role: "unknown", Postgres: "none"}
	if me := fsm.NodeByName(st, n.cfg.Name); me != nil {
		b.Role = fsm.RoleName(me.Role)
	}
	if n.pg != nil {
		pg := n.pg.Observed()
		switch {
		case !pg.GetRunning():
			b.Postgres = "stopped"
		case pg.InRecovery:
			b.Postgres = "in recovery"
		default:
			b.Postgres = "writable"
		}
	}
	return b
}

func writeHealth(w http.ResponseWriter, ok bool, b healthBody) {
	w.Header().Set("Content-Type", "application/json")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(b)
}

// handlePrimary answers 200 only where Postgres is the current, lease-holding
// primary: HAProxy routes writes with it.
func (n *Node) handlePrimary(w http.ResponseWriter, _ *http.Request) {
	b := n.healthBody()
	ok := n.pg != nil && n.pg.Writable()
	if !ok {
		b.Reason = "not the lease-holding primary"
	}
	writeHealth(w, ok, b)
}

// handleReplica answers 200 on a standby that streams from its upstream.
func (n *Node) handleReplica(w http.ResponseWriter, _ *http.Request) {
	b := n.healthBody()
	pg := (*pb.PostgresStatus)(nil)
	if n.pg != nil {
		pg = n.pg.Observed()
	}
	ok := pg.GetRunning() && pg.GetInRecovery() && pg.GetWalReceiverStatus() == "streaming"
	if !ok {
		b.Reason = "not a streaming standby"
	}
	if ok && hasTag(n.cfg.Tags, "noloadbalance") {
		ok, b.Reason = false, "tagged noloadbalance"
	}
	writeHealth(w, ok, b)
}

// handleHealth answers 200 when the sidecar runs and, on a data node,
// Postgres answers.
func (n *Node) handleHealth(w http.ResponseWriter, _ *http.Request) {
	b := n.healthBody()
	ok := n.pg == nil || n.pg.Observed().GetRunning()
	if !ok {
		b.Reason = "postgres is not running"
	}
	writeHealth(w, ok, b)
}

func hasTag(tags []string, tag string) bool {
	for _, t := range tags {
		if t == tag {
			return true
		}
	}
	return false
}
