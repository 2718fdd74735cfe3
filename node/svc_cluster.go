package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/clusterconf"
	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func (n *Node) newGRPCServer() *grpc.Server {
	var opts []grpc.ServerOption
	if n.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(n.tls.ServerConfig())))
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(n.unaryInterceptor), grpc.ChainStreamInterceptor(n.streamInterceptor))
	s := grpc.NewServer(opts...)
	pb.RegisterClusterServiceServer(s, &clusterService{n: n})
	pb.RegisterNodeServiceServer(s, &nodeService{n: n})
	pb.RegisterPeerServiceServer(s, &peerService{n: n})
	pb.RegisterConfigServiceServer(s, &configService{n: n})
	return s
}

type clusterService struct {
	pb.UnimplementedClusterServiceServer
	n *Node
}

// leaderClient returns a client of the leader's ClusterService, or nil when
// this node is the leader.
func (n *Node) leaderClient() (pb.ClusterServiceClient, error) {
	if n.isLeader() {
		return nil, nil
	}
	conn, err := n.leaderConn()
	if err != nil {
		return nil, err
	}
	return pb.NewClusterServiceClient(conn), nil
}

// Show answers from the leader, which holds every sidecar's latest report
// (a new leader once it has applied what its predecessor committed:
// requireLeader); when the leader cannot be reached it answers from the
// local FSM with the status of other nodes unknown.
func (s *clusterService) Show(ctx context.Context, req *pb.ShowRequest) (*pb.ShowResponse, error) {
	c, err := s.n.leaderClient()
	switch {
	case err == nil && c != nil:
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.Show(cctx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		s.n.logger.Debug("show: leader did not answer, answering locally", "error", err)
	case err == nil:
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.n.requireLeader(cctx)
		cancel()
		if err != nil {
			s.n.logger.Debug("show: this new leader's state is not caught up yet, answering from it anyway", "error", err)
		}
	}
	return s.n.clusterView(s.n.refreshReports(ctx, true)), nil
}

// refreshStaleReports asks every node whose latest report is missing or
// stale for its status directly. Reports are pushed to the Raft leader, so a
// node that has just become leader (or answers while the leader is away)
// holds none: without this, cluster matrix would call healthy nodes
// unreachable for a few monitor intervals after every leadership change.
func (n *Node) refreshStaleReports(ctx context.Context) { n.refreshReports(ctx, false) }

// showProbeTimeout bounds how long cluster show waits for a node's own
// answer before calling it unreachable.
const showProbeTimeout = 500 * time.Millisecond

// refreshReports asks nodes for their status directly (every node when all
// is set, as cluster show does so that it states what is true now, not what
// a report up to three monitor intervals old said; else only those whose
// report is missing or stale) and returns the ids of those that did not
// answer in time.
func (n *Node) refreshReports(ctx context.Context, all bool) map[uint32]bool {
	fresh := 3 * n.cfg.Timing.MonitorInterval.D()
	ctx, cancel := context.WithTimeout(ctx, min(fresh, showProbeTimeout))
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	silent := map[uint32]bool{}
	for _, row := range n.fsm.State().Nodes {
		if row.Id == n.ID() || row.GrpcAddress == "" {
			continue
		}
		if _, at, ok := n.reports.get(row.Id); !all && ok && time.Since(at) <= fresh {
			continue
		}
		wg.Add(1)
		go func(id uint32, addr string) {
			defer wg.Done()
			answered := false
			defer func() {
				if !answered {
					mu.Lock()
					silent[id] = true
					mu.Unlock()
				}
			}()
			conn, err := n.peers.get(addr)
			if err != nil {
				return
			}
			resp, err := pb.NewPeerServiceClient(conn).Sample(ctx, &pb.SampleRequest{})
			if err != nil || resp.Report.GetNodeId() != id {
				return
			}
			answered = true
			n.reports.put(resp.Report, time.Now())
		}(row.Id, row.GrpcAddress)
	}
	wg.Wait()
	return silent
}

// clusterView builds cluster show from the FSM and the reports this node
// holds; silent are the nodes that did not answer just now.
func (n *Node) clusterView(silent map[uint32]bool) *pb.ShowResponse {
	st := n.fsm.State()
	_, leaderID := n.raft.LeaderWithID()
	resp := &pb.ShowResponse{
		Cluster:            st.ClusterName,
		Term:               st.Term,
		RaftLeader:         string(leaderID),
		Paused:             st.Settings.GetPaused(),
		FailoverMode:       st.Settings.GetFailoverMode(),
		AppliedIndex:       st.AppliedIndex,
		Lease:              proto.Clone(st.Lease).(*pb.Lease),
		AnsweredBy:         n.cfg.Name,
		SystemIdentifier:   st.SystemIdentifier,
		Synchronous:        st.Settings.GetSynchronous(),
		SyncMode:           clusterconf.SyncModeText(st.GetSettings()),
		SynchronousCount:   int32(clusterconf.SyncCount(st.GetSettings())),
		SyncWarning:        fsm.SyncWarning(st),
		SyncCommittedCount: uint32(fsm.CommittedSyncCount(st)),
	}
	if st.Switchover != nil {
		resp.Switchover = proto.Clone(st.Switchover).(*pb.Switchover)
	}
	resp.Scheduled, resp.Running = st.GetScheduled(), st.GetRunning() // st is a copy already
	voters := map[string]bool{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			voters[string(s.ID)] = s.Suffrage == raft.Voter
			if fsm.NodeByName(st, string(s.ID)) == nil {
				resp.UnregisteredRaftServers = append(resp.UnregisteredRaftServers, string(s.ID))
			}
		}
	}
	fresh := 3 * n.cfg.Timing.MonitorInterval.D()
	var primaryLSN uint64
	if p := fsm.Primary(st); p != nil {
		if r, _, ok := n.reports.get(p.Id); ok && r.Postgres.GetRunning() && !r.Postgres.GetInRecovery() {
			primaryLSN = r.Postgres.GetCurrentLsn()
		}
	}
	for _, row := range st.Nodes {
		v := &pb.NodeView{
			Id: row.Id, Name: row.Name, Kind: row.Kind, Role: row.Role, UpstreamId: row.UpstreamId,
			Location: row.Location, Priority: row.Priority, Conninfo: row.Conninfo, Voter: voters[row.Name],
			Active: row.Active, Tags: slices.Clone(row.Tags), GrpcAddress: row.GrpcAddress, LagBytes: -1,
			SyncStandby: slices.Contains(st.SyncStandbys, row.Id), Maintenance: row.Maintenance,
		}
		if up := fsm.NodeByID(st, row.UpstreamId); up != nil {
			v.Upstream = up.Name
		}
		if string(leaderID) == row.Name {
			v.RaftState = raft.Leader.String()
		}
		r, at, ok := n.reports.get(row.Id)
		isFresh := ok && time.Since(at) <= fresh && !silent[row.Id]
		age := time.Duration(-1)
		if ok {
			v.LastReportUnixMs = r.AtUnixMs
			age = time.Since(at)
			if v.RaftState == "" {
				v.RaftState = r.RaftState
			}
		}
		if row.Name == n.cfg.Name {
			// This node's own view is always current.
			r, isFresh = n.buildReport(), true
		}
		v.Status = nodeStatus(row, r, isFresh, age)
		if isFresh && r.Postgres != nil {
			pg := r.Postgres
			v.Postgres = proto.Clone(pg).(*pb.PostgresStatus)
			v.Timeline = pg.Timeline
			switch {
			case pg.Running && !pg.InRecovery:
				v.LagBytes = 0
			case pg.Running && primaryLSN > 0:
				lsn := max(pg.ReplayLsn, pg.ReceiveLsn)
				v.LagBytes = 0
				if primaryLSN > lsn {
					v.LagBytes = int64(primaryLSN - lsn)
				}
			}
		}
		resp.Nodes = append(resp.Nodes, v)
	}
	return resp
}

// nodeStatus is the Status column of cluster show, in repmgr's words, and
// saying what is known and how old it is: fresh means the node's sidecar
// answered just now (r is its answer); age is how old its last report is
// (-1: none ever).
//
//	running                         as its role says
//	* running                       (rendered for the primary)
//	promoting                       the primary's row, Postgres still in recovery
//	! running as primary            a standby's row, Postgres out of recovery
//	rejoining (former primary, term N)   demoted in term N, its sidecar answers
//	failed (former primary, term N)      demoted in term N, its sidecar is silent
//	stopped / failed                Postgres down (failed: the node is inactive)
//	unreachable (last report 2.1s ago)   its sidecar did not answer
//	needs re-clone (...), ...       its slot was dropped: it clones afresh when back
//	maintenance, ...                `hasidecar node maintenance on`: left alone
func nodeStatus(row *pb.Node, r *pb.NodeReport, fresh bool, age time.Duration) string {
	s := nodeStatusOf(row, r, fresh, age)
	if row.NeedsReclone {
		s = "needs re-clone, " + s
	}
	if row.Maintenance {
		s = "maintenance, " + s
	}
	return s
}

func nodeStatusOf(row *pb.Node, r *pb.NodeReport, fresh bool, age time.Duration) string {
	formerTerm, former := fsm.FormerPrimary(row)
	if !fresh {
		switch {
		case former:
			return fmt.Sprintf("failed (former primary, term %d)", formerTerm)
		case !row.Active && row.Kind == pb.NodeKind_NODE_KIND_DATA:
			return "failed"
		case age < 0:
			return "unreachable (no report yet)"
		}
		return fmt.Sprintf("unreachable (last report %s ago)", age.Round(100*time.Millisecond))
	}
	if row.Kind == pb.NodeKind_NODE_KIND_WITNESS {
		return "running"
	}
	pg := r.GetPostgres()
	switch {
	case former && !(pg.GetRunning() && !pg.GetInRecovery()):
		return fmt.Sprintf("rejoining (former primary, term %d)", formerTerm)
	case !pg.GetRunning():
		if !row.Active {
			return "failed"
		}
		return "stopped"
	case row.Role == pb.NodeRole_NODE_ROLE_PRIMARY && pg.InRecovery:
		return "promoting"
	case row.Role != pb.NodeRole_NODE_ROLE_PRIMARY && !pg.InRecovery:
		return "! running as primary"
	}
	return "running"
}

func (s *clusterService) Events(ctx context.Context, req *pb.EventsRequest) (*pb.EventsResponse, error) {
	// Read what the leader has committed (a follower learns a commit a
	// moment later): at most a second, then this node's own view.
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	_ = s.n.waitCaughtUp(cctx)
	cancel()
	st := s.n.fsm.State()
	nodeID := req.NodeId
	if req.NodeName != "" {
		row := fsm.NodeByName(st, req.NodeName)
		if row == nil {
			return nil, notFound("no node named %q", req.NodeName)
		}
		nodeID = row.Id
	}
	resp := &pb.EventsResponse{}
	for i := len(st.Events) - 1; i >= 0; i-- {
		e := st.Events[i]
		if (req.EventType != "" && e.Type != req.EventType) || (nodeID != 0 && e.NodeId != nodeID) {
			continue
		}
		resp.Events = append(resp.Events, proto.Clone(e).(*pb.Event))
		if req.Limit > 0 && len(resp.Events) >= int(req.Limit) {
			break
		}
	}
	return resp, nil
}

func (s *clusterService) SetPaused(ctx context.Context, req *pb.SetPausedRequest) (*pb.SetPausedResponse, error) {
	if err := s.n.requireLeader(ctx); err != nil {
		return nil, err
	}
	paused := req.Paused
	_, err := s.n.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Paused: &paused}}})
	if err != nil {
		return nil, err
	}
	return &pb.SetPausedResponse{}, nil
}

func (s *clusterService) RemoveNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	return s.n.removeNode(ctx, req)
}

func (s *clusterService) Matrix(ctx context.Context, req *pb.MatrixRequest) (*pb.MatrixResponse, error) {
	if c, err := s.n.leaderClient(); err != nil {
		return nil, err
	} else if c != nil {
		return c.Matrix(ctx, req)
	}
	s.n.refreshStaleReports(ctx)
	// Only current reports: a sidecar that stopped reporting has no row.
	var fresh []*pb.NodeReport
	for _, r := range s.n.reports.all() {
		if _, at, ok := s.n.reports.get(r.NodeId); ok && time.Since(at) <= 3*s.n.cfg.Timing.MonitorInterval.D() {
			fresh = append(fresh, r)
		}
	}
	st := s.n.fsm.State()
	return &pb.MatrixResponse{Reports: fresh, Nodes: st.Nodes}, nil
}
