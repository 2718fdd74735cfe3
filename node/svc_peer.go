package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/node/keeper"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

type peerService struct {
	pb.UnimplementedPeerServiceServer
	n *Node
}

// Join adds a node to the Raft configuration and the nodes table, for the
// node named in the caller's certificate only. A follower sends the joining
// node to the leader (not_leader), which sees its certificate itself.
func (s *peerService) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	n := s.n
	// Only a node's own certificate may join (or re-address) it.
	if err := samePeer(ctx, "join", req.Name); err != nil {
		n.logger.Warn(status.Convert(err).Message())
		return nil, err
	}
	st := n.fsm.State()
	// Refuse another cluster's node on any member, leader or not.
	if st.ClusterName != "" && req.ClusterName != st.ClusterName {
		return nil, &fsm.Error{Code: fsm.CodeClusterMismatch, Msg: fmt.Sprintf("node %q asks to join cluster %q, but this is cluster %q: check cluster: in its config", req.Name, req.ClusterName, st.ClusterName)}
	}
	if st.SystemIdentifier != 0 && req.SystemIdentifier != 0 && req.SystemIdentifier != st.SystemIdentifier {
		return nil, &fsm.Error{Code: fsm.CodeClusterMismatch, Msg: fmt.Sprintf("node %q carries Postgres system identifier %d, this cluster's is %d: its data directory belongs to another cluster", req.Name, req.SystemIdentifier, st.SystemIdentifier)}
	}
	if !n.isLeader() {
		if _, _, err := n.leaderGRPC(); err != nil {
			if n.fresh() {
				// Tell a node with bootstrap: true that no cluster is here.
				return nil, status.Error(codes.FailedPrecondition, notInitialised+n.cfg.Name+" has not joined or started a cluster yet")
			}
			return nil, err
		}
		return nil, n.notLeader()
	}
	if st.ClusterName == "" {
		return nil, status.Error(codes.Unavailable, "the cluster is still initialising: try again")
	}
	if req.Name == "" || req.RaftAddress == "" || req.GrpcAddress == "" {
		return nil, invalid("join: name, raft address and gRPC address are required")
	}
	if other := fsm.NodeByName(st, req.Name); other != nil && other.RaftAddress != req.RaftAddress {
		n.logger.Info("node rejoins with a new raft address", "node", req.Name, "old", other.RaftAddress, "new", req.RaftAddress)
	}
	wasMember := n.isRaftMember(req.Name)
	voter, err := n.addRaftServer(req.Name, req.RaftAddress, fsm.MaxVoters(st.Settings))
	if err != nil {
		return nil, err
	}
	kind := req.Kind
	res, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{
		ClusterName: req.ClusterName, Name: req.Name, Kind: kind, Location: req.Location, Priority: req.Priority,
		Conninfo: req.Conninfo, Tags: req.Tags, RaftAddress: req.RaftAddress, GrpcAddress: req.GrpcAddress,
		HttpAddress: req.HttpAddress, Voter: voter,
	}}})
	if err != nil {
		if !wasMember {
			// Raft accepted the server but the registration failed: take
			// it out again, or it would count towards the quorum with no
			// row anyone sees.
			if rerr := n.raft.RemoveServer(raft.ServerID(req.Name), 0, 10*time.Second).Error(); rerr != nil {
				n.logger.Error("join rollback: removing the unregistered raft server failed: remove it with `hasidecar node remove`", "node", req.Name, "error", rerr)
			} else {
				n.logger.Warn("join rolled back: the raft server is removed again", "node", req.Name, "error", err)
			}
		}
		return nil, fmt.Errorf("register joining node %s: %w", req.Name, err)
	}
	n.logger.Info("node joined", "node", req.Name, "node_id", res.NodeID, "voter", voter)
	return &pb.JoinResponse{NodeId: res.NodeID, Voter: voter, Leader: n.cfg.Name}, nil
}

// isRaftMember reports whether name is a server of the current Raft
// configuration.
func (n *Node) isRaftMember(name string) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == name {
			return true
		}
	}
	return false
}

// addRaftServer adds (or re-addresses) a server: a voter while there are
// fewer than maxVoters (the cluster's raft.max_voters), a non-voter after
// that; the leader promotes non-voters later when a voter goes, and a
// witness in place of a data voter (leader.PlanVoters).
func (n *Node) addRaftServer(name, addr string, maxVoters int) (voter bool, err error) {
	// Joins arrive at once (a lab starts every node together): without the
	// lock each would count the voters before the others were added.
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, fmt.Errorf("read raft configuration: %w", err)
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == name && string(s.Address) == addr {
			return s.Suffrage == raft.Voter, nil // already a member
		}
		if s.Suffrage == raft.Voter && string(s.ID) != name {
			voters++
		}
	}
	if voters < maxVoters {
		err = n.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(addr), 0, 10*time.Second).Error()
		voter = true
	} else {
		err = n.raft.AddNonvoter(raft.ServerID(name), raft.ServerAddress(addr), 0, 10*time.Second).Error()
	}
	if err != nil {
		return false, fmt.Errorf("add %s (%s) to the raft configuration: %w", name, addr, err)
	}
	return voter, nil
}

// removeNode unregisters a node: Raft membership first, then the row.
func (n *Node) removeNode(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	if err := n.requireLeader(ctx); err != nil {
		return nil, err
	}
	st := n.fsm.State()
	row := fsm.NodeByID(st, req.NodeId)
	if req.Name != "" {
		row = fsm.NodeByName(st, req.Name)
	}
	if row == nil && req.Name != "" && req.Name != n.cfg.Name && n.isRaftMember(req.Name) {
		// A Raft server with no row (a join that never registered).
		if err := n.raft.RemoveServer(raft.ServerID(req.Name), 0, 10*time.Second).Error(); err != nil {
			return nil, fmt.Errorf("remove %s from the raft configuration: %w", req.Name, err)
		}
		n.logger.Info("unregistered raft server removed", "node", req.Name)
		return &pb.RemoveNodeResponse{}, nil
	}
	if row == nil {
		return nil, notFound("no node with id %d or name %q", req.NodeId, req.Name)
	}
	if row.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return nil, refuse("node %q is the primary: switch over to another node before removing it", row.Name)
	}
	if row.Name == n.cfg.Name {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return nil, fmt.Errorf("hand leadership over before removing %s: %w", row.Name, err)
		}
		return nil, status.Error(codes.Unavailable, "leadership handed over: try again")
	}
	if err := n.raft.RemoveServer(raft.ServerID(row.Name), 0, 10*time.Second).Error(); err != nil {
		return nil, fmt.Errorf("remove %s from the raft configuration: %w", row.Name, err)
	}
	if _, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: row.Id}}}); err != nil {
		return nil, fmt.Errorf("unregister %s: %w", row.Name, err)
	}
	n.logger.Info("node removed", "node", row.Name, "node_id", row.Id)
	return &pb.RemoveNodeResponse{NodeId: row.Id}, nil
}

func (s *peerService) Remove(ctx context.Context, req *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	return s.n.removeNode(ctx, req)
}

// Apply commits a command forwarded by a follower: only the kinds of
// command followers propose, and only about the caller itself
// (fsm.CheckForwarded).
func (s *peerService) Apply(ctx context.Context, req *pb.ApplyRequest) (*pb.ApplyResponse, error) {
	if !s.n.isLeader() {
		return nil, status.Error(codes.Unavailable, "not the raft leader")
	}
	cmd, err := fsm.Decode(req.Command)
	if err != nil {
		return nil, invalid("apply: %v", err)
	}
	if id, ok := caller(ctx); ok {
		if !s.n.isRaftMember(id.Name) {
			s.n.logger.Warn("denied: forwarded command from a node outside the Raft configuration", "caller", id.Name)
			return nil, status.Errorf(codes.PermissionDenied, "denied: %s is not a member of the Raft configuration: join first", id)
		}
		if err := fsm.CheckForwarded(s.n.fsm.State(), id.Name, cmd); err != nil {
			s.n.logger.Warn("denied: forwarded command", "caller", id.Name, "error", err)
			return nil, status.Errorf(codes.PermissionDenied, "denied: %v", err)
		}
	}
	res, err := s.n.applyLocal(ctx, req.Command)
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &pb.ApplyResponse{Index: res.Index, NodeId: res.NodeID}, nil
}

func (s *peerService) Report(ctx context.Context, req *pb.ReportRequest) (*pb.ReportResponse, error) {
	if req.Report == nil || req.Report.NodeId == 0 {
		return nil, invalid("report without a node id")
	}
	if err := samePeer(ctx, "report", req.Report.Name); err != nil {
		return nil, err
	}
	if row := fsm.NodeByName(s.n.fsm.State(), req.Report.Name); row == nil || row.Id != req.Report.NodeId {
		return nil, invalid("report from %q with node id %d: not that node's id", req.Report.Name, req.Report.NodeId)
	}
	s.n.reports.put(req.Report, time.Now())
	return &pb.ReportResponse{}, nil
}

func (s *peerService) Sample(context.Context, *pb.SampleRequest) (*pb.SampleResponse, error) {
	if s.n.ID() == 0 {
		return nil, status.Error(codes.Unavailable, "not registered yet")
	}
	return &pb.SampleResponse{Report: s.n.buildReport()}, nil
}

func (s *peerService) Ping(ctx context.Context, _ *pb.PingRequest) (*pb.PingResponse, error) {
	resp := &pb.PingResponse{NodeId: s.n.ID(), Name: s.n.cfg.Name}
	if s.n.pg != nil {
		resp.PostgresOk = s.n.pg.Observed().GetRunning()
	}
	return resp, nil
}

// notInitialised prefixes the answer of a node that belongs to no cluster.
const notInitialised = "not_initialised: "

// fresh: this node has no Raft state, knows no cluster and no leader.
func (n *Node) fresh() bool {
	addr, _ := n.raft.LeaderWithID()
	return n.rparts != nil && !n.rparts.hasState && n.fsm.State().ClusterName == "" && addr == ""
}

// errAllFresh: every member that answered a join belongs to no cluster yet
// (and none answered that it has one): a bootstrap node may start one.
var errAllFresh = errors.New("the members that answered have not started a cluster yet")

// joinOnce asks each address in join to add this node; the first member
// that answers decides.
func (n *Node) joinOnce(ctx context.Context) error {
	req := &pb.JoinRequest{
		ClusterName: n.cfg.Cluster, Name: n.cfg.Name, Kind: n.registerCommand().Kind,
		RaftAddress: n.cfg.RaftAdvertise(), GrpcAddress: n.cfg.GRPCAdvertise(), HttpAddress: n.cfg.HTTP.Listen,
		Location: n.cfg.Location, Priority: int32(n.conf().Priority), Tags: n.conf().Tags,
	}
	if n.cfg.Postgres != nil {
		req.Conninfo = n.cfg.PostgresConninfo()
	}
	if n.pg != nil {
		req.SystemIdentifier = n.pg.LocalSystemIdentifier(ctx)
	}
	var errs []string
	fresh, other := 0, 0
	for _, addr := range n.cfg.Join {
		if addr == n.cfg.GRPCAdvertise() {
			continue
		}
		conn, err := n.peers.get(addr)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		resp, err := pb.NewPeerServiceClient(conn).Join(cctx, req)
		if leader, ok := LeaderRedirect(err); ok {
			// A follower sends us to the leader: ask it directly.
			if lc, lerr := n.peers.get(leader); lerr == nil {
				addr = leader
				resp, err = pb.NewPeerServiceClient(lc).Join(cctx, req)
			}
		}
		cancel()
		if err == nil {
			n.id.Store(resp.NodeId)
			n.logger.Info("joined the cluster", "via", addr, "leader", resp.Leader, "node_id", resp.NodeId, "voter", resp.Voter)
			return nil
		}
		var fe *fsm.Error
		if errors.As(fromStatus(err), &fe) && fe.Code == fsm.CodeClusterMismatch {
			return &joinRefusedError{msg: fmt.Sprintf("join refused by %s: %s", addr, fe.Msg)}
		}
		msg := status.Convert(err).Message()
		if strings.HasPrefix(msg, notInitialised) {
			fresh++
			continue
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(msg, "connection") {
			other++ // a member answered: there may well be a cluster
		}
		errs = append(errs, fmt.Sprintf("%s: %v", addr, msg))
	}
	if fresh > 0 && other == 0 {
		return errAllFresh
	}
	return errors.New(strings.Join(errs, "; "))
}

// LSN answers the leader's question before a failover: this node's freshest
// WAL positions and timeline.
func (s *peerService) LSN(ctx context.Context, _ *pb.LSNRequest) (*pb.LSNResponse, error) {
	return s.n.lsnAnswer(ctx)
}

func (n *Node) lsnAnswer(ctx context.Context) (*pb.LSNResponse, error) {
	if n.pg == nil {
		return nil, refuse("%s is a witness: it has no Postgres", n.cfg.Name)
	}
	resp := &pb.LSNResponse{NodeId: n.ID(), LeaseAnchor: n.pg.NoteAnswer()}
	if !n.pgc.Running() {
		resp.Reason = "postgres is not running"
		resp.Postgres = &pb.PostgresStatus{}
		return resp, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := n.pgc.Status(qctx)
	if err != nil {
		resp.Reason = "status query: " + err.Error()
		resp.Postgres = &pb.PostgresStatus{}
		return resp, nil
	}
	resp.Postgres = keeper.StatusToProto(st, n.cfg.Postgres.Port)
	resp.Timeline = st.Timeline
	resp.Healthy = true
	return resp, nil
}

// EnsureSlot creates a standby's slot on this node, which must be the
// running primary.
func (s *peerService) EnsureSlot(ctx context.Context, req *pb.EnsureSlotRequest) (*pb.EnsureSlotResponse, error) {
	n := s.n
	st := n.fsm.State()
	me := fsm.NodeByName(st, n.cfg.Name)
	if n.pg == nil || me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return nil, status.Error(codes.Unavailable, n.cfg.Name+" is not the primary")
	}
	if !strings.HasPrefix(req.SlotName, "hasidecar_") {
		return nil, invalid("slot %q is not a hasidecar slot", req.SlotName)
	}
	known := false
	for _, row := range st.Nodes {
		known = known || row.SlotName == req.SlotName
	}
	if !known {
		return nil, notFound("no registered node uses slot %q", req.SlotName)
	}
	if id, ok := caller(ctx); ok {
		if row := fsm.NodeByName(st, id.Name); row == nil || row.SlotName != req.SlotName {
			return nil, status.Errorf(codes.PermissionDenied, "denied: %s may not ask for slot %q: a node asks only for its own slot", id, req.SlotName)
		}
	}
	if err := n.pg.EnsureReplicationRole(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	created, err := n.pgc.EnsureSlot(ctx, req.SlotName)
	if err != nil {
		return nil, status.Error(codes.Unavailable, fmt.Sprintf("create slot %s: %v", req.SlotName, err))
	}
	return &pb.EnsureSlotResponse{Created: created}, nil
}
