package node

import (
	"context"
	"maps"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"

	"github.com/hasidecar/hasidecar/clusterconf"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

type nodeService struct {
	pb.UnimplementedNodeServiceServer
	n *Node
}

func (s *nodeService) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp := s.n.status()
	if catchUpAsked(ctx) && s.n.isLeader() {
		// A follower catching up (waitCaughtUp) learns a commit index
		// with the next AppendEntries, which an idle leader sends only
		// every raft CommitTimeout: a barrier sends one at once, carrying
		// the commit index answered here. Not waited for.
		_ = s.n.raft.Barrier(time.Second)
	}
	return resp, nil
}

// catchUpHeader marks a Status call made to catch up with the leader
// (waitCaughtUp): the leader then pushes its commit index to followers.
const catchUpHeader = "hasidecar-catch-up"

func catchUpAsked(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(catchUpHeader)) > 0
}

func (n *Node) status() *pb.StatusResponse {
	st := n.fsm.State()
	_, leader := n.raft.LeaderWithID()
	stats := n.raft.Stats()
	resp := &pb.StatusResponse{
		NodeId:       n.ID(),
		Name:         n.cfg.Name,
		Kind:         n.registerCommand().Kind,
		Cluster:      n.cfg.Cluster,
		RaftState:    n.raft.State().String(),
		RaftLeader:   string(leader),
		AppliedIndex: n.raft.AppliedIndex(),
		Term:         st.Term,
		Version:      Version,
		CommitIndex:  parseUint(stats["commit_index"]),
		LastLogIndex: n.raft.LastIndex(),
	}
	if me := n.self(); me != nil {
		resp.Role = me.Role
	}
	resp.ConfigDrift = clusterconf.Drift(n.cfg, n.fileKeys, st.GetSettings())
	if live := n.conf(); live.Postgres != nil && len(live.Postgres.Parameters) > 0 {
		resp.LocalParameters = maps.Clone(live.Postgres.Parameters) // reloaded by SIGHUP
	}
	if n.tls != nil {
		resp.TlsCertNotAfterUnix = n.tls.NotAfter().Unix()
	}
	if n.pg != nil {
		resp.Postgres = n.pg.Observed()
		resp.DataDir = n.cfg.Postgres.DataDir
		resp.ReconcilerState = n.pg.StateText()
		if copies, err := pgctl.SetAsideCopies(n.cfg.Postgres.DataDir); err == nil {
			resp.SetAsideCopies = copies
		} else {
			n.logger.Debug("status: listing set-aside copies", "error", err)
		}
	}
	return resp
}

func parseUint(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// buildReport is this sidecar's monitoring sample.
func (n *Node) buildReport() *pb.NodeReport {
	r := &pb.NodeReport{
		NodeId:       n.ID(),
		Name:         n.cfg.Name,
		AtUnixMs:     time.Now().UnixMilli(),
		RaftState:    n.raft.State().String(),
		AppliedIndex: n.raft.AppliedIndex(),
	}
	if n.pg != nil {
		r.Postgres = n.pg.Observed()
	}
	r.Peers = n.peerReachability()
	return r
}

// reportLoop sends a sample to the leader every monitor interval.
func (n *Node) reportLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.Timing.MonitorInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.loopAt.Store(time.Now().UnixNano())
		if n.ID() == 0 {
			continue
		}
		r := n.buildReport()
		st := n.fsm.State()
		lease, appliedAt := n.fsm.Lease()
		n.metrics.observe(r, lease.GetFlushLsn())
		n.metrics.observeState(st, n.raft.State().String(), lease, appliedAt, time.Now())
		if n.raft.State() == raft.Leader {
			n.reports.put(r, time.Now())
			continue
		}
		conn, err := n.leaderConn()
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, n.cfg.Timing.MonitorInterval.D())
		_, err = pb.NewPeerServiceClient(conn).Report(cctx, &pb.ReportRequest{Report: r})
		cancel()
		if err != nil {
			n.logger.Debug("report to leader", "error", err)
		}
	}
}
