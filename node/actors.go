package node

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/node/keeper"
	"github.com/hasidecar/hasidecar/node/leader"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The wiring behind the actors' interfaces (node/keeper, node/leader):
// the Raft log, the peers over gRPC, Raft's membership. Each adapter is a
// thin translation; the decisions stay in the actors and in fsm.

// nodeLog is the replicated log as the actors see it.
type nodeLog struct{ n *Node }

func (l nodeLog) State() *pb.ClusterState                { return l.n.fsm.State() }
func (l nodeLog) Changed() <-chan struct{}               { return l.n.fsm.Changed() }
func (l nodeLog) Lease() (*pb.Lease, time.Time)          { return l.n.fsm.Lease() }
func (l nodeLog) WaitCaughtUp(ctx context.Context) error { return l.n.waitCaughtUp(ctx) }

// Propose bounds the proposal by timeout (0: only by ctx, as Node.Propose
// retries while there is no leader).
func (l nodeLog) Propose(ctx context.Context, cmd *pb.Command, timeout time.Duration) (fsm.Result, error) {
	if timeout <= 0 {
		return l.n.Propose(ctx, cmd)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return l.n.Propose(pctx, cmd)
}

// nodePeers asks the other sidecars over gRPC (this node's own questions
// are answered locally).
type nodePeers struct{ n *Node }

func (p nodePeers) LSNs(ctx context.Context, nodes []*pb.Node, term uint64, timeout time.Duration) []*pb.LSNResponse {
	out := make([]*pb.LSNResponse, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Add(1)
		go func(i int, node *pb.Node) {
			defer wg.Done()
			resp, err := p.n.askLSN(ctx, node, term, timeout)
			if err != nil {
				p.n.logger.Debug("candidate did not answer", "node", node.Name, "error", err)
				return
			}
			out[i] = resp
		}(i, node)
	}
	wg.Wait()
	return out
}

func (p nodePeers) Report(id uint32) (uint64, time.Time, bool) {
	r, at, ok := p.n.reports.get(id)
	return r.GetAppliedIndex(), at, ok
}

func (p nodePeers) EnsureSlot(ctx context.Context, primary *pb.Node, slot string, term uint64, timeout time.Duration) error {
	conn, err := p.n.peers.get(primary.GrpcAddress)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := pb.NewPeerServiceClient(conn).EnsureSlot(cctx, &pb.EnsureSlotRequest{SlotName: slot, Term: term}); err != nil {
		return fmt.Errorf("ask primary %s for slot %s: %w", primary.Name, slot, err)
	}
	return nil
}

func (p nodePeers) PostgresAnswers(node *pb.Node, timeout time.Duration) bool {
	addr := pgctl.ConninfoAddr(node.GetConninfo())
	if addr == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// askLSN asks one node's sidecar for its fresh WAL positions.
func (n *Node) askLSN(ctx context.Context, node *pb.Node, term uint64, timeout time.Duration) (*pb.LSNResponse, error) {
	if node.Name == n.cfg.Name {
		return n.lsnAnswer(ctx)
	}
	conn, err := n.peers.get(node.GrpcAddress)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return pb.NewPeerServiceClient(conn).LSN(cctx, &pb.LSNRequest{Term: term})
}

// pickCandidate is the leader's choice of a new primary against the live
// cluster (manual failover and the storage-failure check use it).
func (n *Node) pickCandidate(ctx context.Context, st *pb.ClusterState, lease *pb.Lease) (*fsm.Candidate, []fsm.Candidate, []string) {
	return leader.PickCandidate(ctx, nodePeers{n}, st, lease, n.cfg.Timing.MonitorInterval.D())
}

// askLSNsFor asks every node for its freshest LSNs, in parallel, bounded by
// the monitor interval (at least 500 ms).
func (n *Node) askLSNsFor(ctx context.Context, nodes []*pb.Node, term uint64) []fsm.Candidate {
	return leader.AskLSNs(ctx, nodePeers{n}, nodes, term, max(n.cfg.Timing.MonitorInterval.D(), 500*time.Millisecond))
}

// nodeRaft is Raft's membership and leadership for the leader.
type nodeRaft struct{ n *Node }

func (r nodeRaft) Servers() ([]leader.Server, uint64, error) {
	f := r.n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("read the raft configuration: %w", err)
	}
	var out []leader.Server
	for _, s := range f.Configuration().Servers {
		out = append(out, leader.Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, f.Index(), nil
}

// raftChangeTimeout bounds a membership change when ctx has no sooner
// deadline (raft's futures take a timeout, not a context).
const raftChangeTimeout = 10 * time.Second

func changeTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return min(time.Until(dl), raftChangeTimeout)
	}
	return raftChangeTimeout
}

func (r nodeRaft) AddVoter(ctx context.Context, s leader.Server, prevIndex uint64) error {
	r.n.memberMu.Lock()
	defer r.n.memberMu.Unlock()
	if err := r.n.raft.AddVoter(raft.ServerID(s.ID), raft.ServerAddress(s.Address), prevIndex, changeTimeout(ctx)).Error(); err != nil {
		return fmt.Errorf("make %s a raft voter: %w", s.ID, err)
	}
	return nil
}

func (r nodeRaft) DemoteVoter(ctx context.Context, id string, prevIndex uint64) error {
	r.n.memberMu.Lock()
	defer r.n.memberMu.Unlock()
	if err := r.n.raft.DemoteVoter(raft.ServerID(id), prevIndex, changeTimeout(ctx)).Error(); err != nil {
		return fmt.Errorf("make %s a raft non-voter: %w", id, err)
	}
	return nil
}

func (r nodeRaft) AppliedIndex() uint64 { return r.n.raft.AppliedIndex() }

func (r nodeRaft) TransferLeadership(to leader.Server) error {
	return r.n.raft.LeadershipTransferToServer(raft.ServerID(to.ID), raft.ServerAddress(to.Address)).Error()
}

// The adapters implement the actors' interfaces.
var (
	_ keeper.Log      = nodeLog{}
	_ leader.Log      = nodeLog{}
	_ keeper.Peers    = nodePeers{}
	_ leader.Peers    = nodePeers{}
	_ leader.Raft     = nodeRaft{}
	_ keeper.Postgres = (*pgPostgres)(nil)
)
