package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/showdoc"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

type metrics struct {
	reg            *prometheus.Registry
	leaderChanges  prometheus.Counter
	promotions     prometheus.Counter
	fences         prometheus.Counter
	raftLeader     prometheus.Gauge
	term           prometheus.Gauge
	pgRunning      prometheus.Gauge
	pgPrimary      prometheus.Gauge
	lagBytes       prometheus.Gauge
	timeline       prometheus.Gauge
	certExpiry     prometheus.Gauge
	certOnce       sync.Once
	raftState      *prometheus.GaugeVec // 1 for this node's Raft state
	leaseRemaining prometheus.Gauge
	failovers      prometheus.Counter
	switchovers    prometheus.Counter
	decideSeconds  prometheus.Histogram // the leader's decision passes
	// data nodes only
	dataFree, dataTotal prometheus.Gauge
	diskFull            prometheus.Gauge
	pendingRestart      prometheus.Gauge
	// standbyLag: on the primary, per standby (pg_stat_replication);
	// replayLag: on a standby, its own lag behind the primary.
	standbyLagBytes  *prometheus.GaugeVec
	standbyLagSecs   *prometheus.GaugeVec
	slotRetained     *prometheus.GaugeVec // on the primary, per slot
	replayLagBytes   prometheus.Gauge
	replayLagSeconds prometheus.Gauge
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
	m.raftState = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hasidecar_raft_state", Help: "1 for this node's Raft state (leader, follower, candidate, shutdown), 0 for the others.", ConstLabels: labels}, []string{"state"})
	m.leaseRemaining = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_lease_remaining_seconds", Help: "Time left on the primary's lease as this node applied its last renewal, drift margin not included (0: none held, released or expired).", ConstLabels: labels})
	m.failovers = prometheus.NewCounter(prometheus.CounterOpts{Name: "hasidecar_failovers_total", Help: "Committed failover decisions (automatic and manual) this node applied since it started.", ConstLabels: labels})
	m.switchovers = prometheus.NewCounter(prometheus.CounterOpts{Name: "hasidecar_switchovers_total", Help: "Committed switchover promotions this node applied since it started.", ConstLabels: labels})
	m.decideSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hasidecar_decision_loop_seconds", Help: "How long each pass of the Raft leader's decision loop took (lease check, candidates' LSNs, the promotion's commit), on the leader only.", ConstLabels: labels,
		Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}})
	m.reg.MustRegister(m.leaderChanges, m.promotions, m.fences, m.raftLeader, m.term, m.pgRunning, m.pgPrimary, m.lagBytes, m.timeline,
		m.raftState, m.leaseRemaining, m.failovers, m.switchovers, m.decideSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if n.cfg.Postgres != nil {
		m.dataFree = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_data_dir_free_bytes", Help: "Free bytes (for the postgres user) on the filesystem of the data directory.", ConstLabels: labels})
		m.dataTotal = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_data_dir_total_bytes", Help: "Size in bytes of the filesystem of the data directory.", ConstLabels: labels})
		m.diskFull = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_disk_full", Help: "1 when the data directory's (or pg_wal's) filesystem has less free space than postgres.disk_full_threshold, or a write failed for lack of space.", ConstLabels: labels})
		m.standbyLagBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hasidecar_standby_lag_bytes", Help: "On the primary: how far each standby's replay is behind the primary's current WAL position (pg_stat_replication).", ConstLabels: labels}, []string{"standby"})
		m.replayLagBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_replication_lag_bytes", Help: "On a standby: how far its replay is behind the primary's flush position at the primary's last lease renewal (0 on the primary).", ConstLabels: labels})
		m.replayLagSeconds = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_replication_lag_seconds", Help: "On a standby: now minus the commit time of the last replayed transaction, 0 when caught up (0 on the primary).", ConstLabels: labels})
		m.standbyLagSecs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hasidecar_standby_lag_seconds", Help: "On the primary: each standby's replay lag as Postgres measures it (pg_stat_replication.replay_lag; 0 when caught up and idle).", ConstLabels: labels}, []string{"standby"})
		m.slotRetained = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hasidecar_slot_retained_bytes", Help: "On the primary: WAL each replication slot holds back in pg_wal (current WAL position minus the slot's restart_lsn); slot_retention drops a slot that stays inactive, max_slot_wal_keep_size caps it.", ConstLabels: labels}, []string{"slot"})
		m.pendingRestart = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hasidecar_postgres_pending_restart", Help: "How many Postgres settings changed in the configuration files take effect only after a restart (pg_settings.pending_restart); 0: none.", ConstLabels: labels})
		m.reg.MustRegister(m.pendingRestart)
		m.reg.MustRegister(m.dataFree, m.dataTotal, m.diskFull, m.standbyLagBytes, m.standbyLagSecs, m.slotRetained, m.replayLagBytes, m.replayLagSeconds)
	}
	return m
}

// observeState publishes what the replicated state and Raft say: the term,
// this node's Raft state, the lease time left.
func (m *metrics) observeState(st *pb.ClusterState, raftState string, lease *pb.Lease, appliedAt, now time.Time) {
	m.term.Set(float64(st.Term))
	for _, s := range []raft.RaftState{raft.Leader, raft.Follower, raft.Candidate, raft.Shutdown} {
		m.raftState.WithLabelValues(strings.ToLower(s.String())).Set(b2f(raftState == s.String()))
	}
	left := time.Duration(0)
	if lease.GetHolderId() != 0 && !lease.GetReleased() {
		left = max(0, appliedAt.Add(time.Duration(lease.GetDurationMs())*time.Millisecond).Sub(now))
	}
	m.leaseRemaining.Set(left.Seconds())
}

// observePromote counts a committed promotion by its reason.
func (m *metrics) observePromote(reason string) {
	switch reason {
	case fsm.EventSwitchover:
		m.switchovers.Inc()
	default:
		m.failovers.Inc()
	}
}

// observe publishes this node's own report; primaryFlush is the primary's
// flush position at its last lease renewal (a standby's lag in bytes).
func (m *metrics) observe(r *pb.NodeReport, primaryFlush uint64) {
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
	if m.pendingRestart != nil {
		m.pendingRestart.Set(float64(len(pg.GetPendingRestart())))
	}
	if pg.GetInRecovery() {
		m.lagBytes.Set(float64(pg.GetReplayLsn()))
	} else {
		m.lagBytes.Set(float64(pg.GetCurrentLsn()))
	}
	if m.standbyLagBytes == nil {
		return
	}
	m.standbyLagBytes.Reset()
	m.standbyLagSecs.Reset()
	m.slotRetained.Reset()
	for _, sl := range pg.GetSlots() {
		m.slotRetained.WithLabelValues(sl.Name).Set(float64(max(0, sl.RetainedBytes)))
	}
	if !pg.GetRunning() || pg.GetInRecovery() {
		m.replayLagSeconds.Set(float64(max(0, pg.GetReplayLagMs())) / 1000)
		if l := primaryFlush; l > 0 && pg.GetReplayLsn() > 0 {
			m.replayLagBytes.Set(float64(max(0, int64(l)-int64(pg.GetReplayLsn()))))
		}
		return
	}
	m.replayLagSeconds.Set(0)
	m.replayLagBytes.Set(0)
	for _, row := range pg.GetReplication() {
		if row.ApplicationName == pgctl.GateApplicationName || row.ApplicationName == "" {
			continue
		}
		m.standbyLagBytes.WithLabelValues(row.ApplicationName).Set(float64(max(0, int64(pg.GetCurrentLsn())-int64(row.ReplayLsn))))
		m.standbyLagSecs.WithLabelValues(row.ApplicationName).Set(float64(max(0, row.ReplayLagMs)) / 1000)
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
	for i := range endpoints {
		e := &endpoints[i]
		for _, p := range e.paths {
			mux.Handle(p, readOnly(func(w http.ResponseWriter, r *http.Request) { n.serveCheck(w, r, e) }))
		}
	}
	mux.Handle("/cluster", readOnly(n.handleCluster))
	mux.Handle("/metrics", readOnly(promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{Timeout: httpAnswerTimeout}).ServeHTTP))
	n.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 2 * httpAnswerTimeout}
	n.goLoop(func() {
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "error", err)
		}
	})
	return nil
}

// httpAnswerTimeout bounds what an HTTP answer may wait for (/cluster asks
// the Raft leader); the checks wait for nothing.
const httpAnswerTimeout = 3 * time.Second

// readOnly serves GET and HEAD only: nothing changes over HTTP.
func readOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, r.Method+" is not allowed: the HTTP API only reads (use the CLI or gRPC to change the cluster)", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	})
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
	LagBytes *int64 `json:"lag_bytes,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// healthFacts gathers what the checks decide on from cached state.
func (n *Node) healthFacts() (healthFacts, healthBody) {
	st := n.fsm.State()
	f := healthFacts{Data: n.pg != nil, LagBytes: -1, Synchronous: st.Settings.GetSynchronous(),
		NoLoadBalance: hasTag(n.conf().Tags, "noloadbalance")}
	b := healthBody{Name: n.cfg.Name, Term: st.Term, Role: "unknown", Postgres: "none"}
	me := fsm.NodeByName(st, n.cfg.Name)
	if me != nil {
		b.Role = fsm.RoleName(me.Role)
		f.SyncMember = slices.Contains(st.SyncStandbys, me.Id)
	}
	if n.raft != nil {
		addr, _ := n.raft.LeaderWithID()
		f.RaftLeader = addr != ""
	}
	if at := n.loopAt.Load(); at != 0 {
		f.LoopAge = time.Since(time.Unix(0, at))
	}
	f.LoopLimit = max(5*n.cfg.Timing.MonitorInterval.D(), 5*time.Second)
	if n.pg != nil {
		pg := n.pg.Observed()
		f.Running, f.InRecovery = pg.GetRunning(), pg.GetInRecovery()
		f.Streaming = pg.GetWalReceiverStatus() == "streaming"
		f.Writable = n.pg.Writable()
		switch {
		case !f.Running:
			b.Postgres = "stopped"
		case f.InRecovery:
			b.Postgres = "in recovery"
		default:
			b.Postgres = "writable"
		}
		if f.InRecovery {
			if l := st.Lease; l.GetFlushLsn() > 0 && pg.GetReplayLsn() > 0 {
				f.LagBytes = max(0, int64(l.GetFlushLsn())-int64(pg.GetReplayLsn()))
				b.LagBytes = &f.LagBytes
			}
		}
	}
	return f, b
}

// serveCheck answers one check: 200 or 503 with a JSON body saying who
// answered and why not; 400 for a bad query.
func (n *Node) serveCheck(w http.ResponseWriter, r *http.Request, e *endpoint) {
	f, b := n.healthFacts()
	ok, reason, err := e.check(r.URL.Query(), f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.Reason = reason
	w.Header().Set("Content-Type", "application/json")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(b)
}

// handleCluster is the `cluster show --json` document, as this node gets it
// (from the Raft leader, or its own view when the leader is away).
func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), httpAnswerTimeout)
	defer cancel()
	resp, err := (&clusterService{n: n}).Show(ctx, &pb.ShowRequest{})
	if err != nil {
		http.Error(w, "cluster show: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(showdoc.FromShow(resp))
}

func hasTag(tags []string, tag string) bool { return slices.Contains(tags, tag) }
