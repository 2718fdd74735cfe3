package node

import (
	"context"
	"sync"
	"time"

	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/node/leader"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// monitorLeadership starts the leader's duties when this node becomes the
// Raft leader and stops them when it stops being one, as raft's NotifyCh
// says (unlike LeaderCh it drops no edge: raft blocks until each is read,
// so this loop only starts and stops, never waits on anything else but the
// end of the duties it stops).
func (n *Node) monitorLeadership(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			n.stopLeaderLoop()
			return
		case isLeader := <-n.leaderNotify:
			if isLeader {
				n.startLeaderLoop(ctx)
			} else {
				n.stopLeaderLoop()
			}
		}
	}
}

// startLeaderLoop starts the leader's duties in the shutdown wait group,
// under a context of their own derived from the loops' context.
func (n *Node) startLeaderLoop(parent context.Context) {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if n.leaderCancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(parent)
	done, ready := make(chan struct{}), make(chan struct{})
	n.leaderCancel, n.leaderDone, n.leaderReady = cancel, done, ready
	n.metrics.leaderChanges.Inc()
	n.logger.Info("became raft leader: starting the decision loop")
	n.goLoop(func() {
		defer close(done)
		n.leaderLoop(ctx, ready)
	})
}

func (n *Node) stopLeaderLoop() {
	n.leaderMu.Lock()
	cancel, done := n.leaderCancel, n.leaderDone
	n.leaderCancel, n.leaderDone, n.leaderReady = nil, nil, nil
	n.leaderMu.Unlock()
	if cancel == nil {
		return
	}
	n.logger.Info("no longer raft leader: decision loop stopped")
	cancel()
	<-done
}

// leaderLoop: Barrier (apply everything earlier leaders committed; then
// ready is closed, and the leader-only handlers answer), establish
// leadership (name the cluster on first start), then run the decisions.
func (n *Node) leaderLoop(ctx context.Context, ready chan struct{}) {
	for {
		if err := n.raft.Barrier(5 * time.Second).Error(); err == nil {
			close(ready)
			break
		} else {
			n.logger.Warn("leader barrier", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	if n.fsm.State().ClusterName == "" {
		n.initCluster(ctx)
	}
	l := leader.New(leader.Config{
		Name: n.cfg.Name, Lease: n.cfg.Timing.Lease.D(), DriftMarginPercent: n.cfg.Timing.DriftMarginPercent,
		MonitorInterval: n.cfg.Timing.MonitorInterval.D(), Logger: n.logger, Clock: clock.Real{},
		Decided: func(d time.Duration) { n.metrics.decideSeconds.Observe(d.Seconds()) },
	}, nodeLog{n}, nodePeers{n}, nodeRaft{n})
	// The schedule watcher runs beside the decisions, for as long as they
	// do: it is joined before the leader's duties count as stopped.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.runSchedules(ctx)
	}()
	defer wg.Wait()
	l.Run(ctx)
}

// initCluster names a freshly bootstrapped cluster and records the
// cluster-wide settings of this (the bootstrapping) node's config.
func (n *Node) initCluster(ctx context.Context) {
	s := &pb.Settings{
		FailoverMode:         pb.FailoverMode_FAILOVER_MODE_AUTOMATIC,
		Synchronous:          n.cfg.Synchronous,
		EventMaxCount:        int64(n.cfg.Events.MaxCount),
		EventMaxAgeMs:        n.cfg.Events.MaxAge.D().Milliseconds(),
		MaximumLagOnFailover: uint64(n.cfg.MaximumLagOnFailover),
		LeaseMs:              n.cfg.Timing.Lease.D().Milliseconds(),
		// 0 (off) unless the bootstrapping node's config sets it.
		StorageFailureFailoverMs: n.cfg.FailoverOnStorageFailure.D().Milliseconds(),
		SlotRetentionMs:          n.cfg.SlotRetention.D().Milliseconds(),
		MaxVoters:                int32(n.cfg.Raft.MaxVoters),
		VoterReplaceAfterMs:      n.cfg.Raft.VoterReplaceAfter.D().Milliseconds(),
	}
	if n.cfg.Failover == "manual" {
		s.FailoverMode = pb.FailoverMode_FAILOVER_MODE_MANUAL
	}
	for ctx.Err() == nil {
		_, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: n.cfg.Cluster, Settings: s}}})
		if err == nil {
			n.logger.Info("cluster initialised", "cluster", n.cfg.Cluster)
			return
		}
		if n.fsm.State().ClusterName != "" {
			return
		}
		n.logger.Warn("initialise cluster", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
