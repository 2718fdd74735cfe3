package node

import (
	"context"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// reachability is what this sidecar last saw of every other node's sidecar
// (gRPC Ping) and Postgres (a TCP connect to its conninfo address): the row
// of this node in `cluster matrix`. Probed in its own loop so that a hung
// peer never delays a report.
type reachability struct {
	mu   sync.Mutex
	last map[uint32]*pb.PeerReachability
}

func (n *Node) peerReachability() []*pb.PeerReachability {
	n.reach.mu.Lock()
	defer n.reach.mu.Unlock()
	out := make([]*pb.PeerReachability, 0, len(n.reach.last))
	for _, r := range n.reach.last {
		out = append(out, proto.Clone(r).(*pb.PeerReachability))
	}
	return out
}

// reachEvery is how many monitor intervals apart reachLoop probes; each
// probe waits at most reachTimeout intervals. What it finds is only shown
// (`cluster matrix`, through the reports), never decided on; every probe
// is a gRPC call to each peer's sidecar and a TCP connect to its Postgres
// (a backend forked and gone), so a lab at rest should not pay for it
// every 2 s.
const (
	reachEvery   = 5
	reachTimeout = 2
)

func (n *Node) reachLoop(ctx context.Context) {
	interval := reachEvery * n.cfg.Timing.MonitorInterval.D()
	timeout := reachTimeout * n.cfg.Timing.MonitorInterval.D()
	for {
		st := n.fsm.State()
		results := map[uint32]*pb.PeerReachability{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, row := range st.Nodes {
			if row.Name == n.cfg.Name {
				continue
			}
			wg.Add(1)
			go func(row *pb.Node) {
				defer wg.Done()
				r := n.probePeer(ctx, row, timeout)
				mu.Lock()
				results[row.Id] = r
				mu.Unlock()
			}(row)
		}
		wg.Wait()
		n.reach.mu.Lock()
		n.reach.last = results
		n.reach.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (n *Node) probePeer(ctx context.Context, row *pb.Node, timeout time.Duration) *pb.PeerReachability {
	r := &pb.PeerReachability{NodeId: row.Id}
	var errs []string
	if conn, err := n.peers.get(row.GrpcAddress); err == nil {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := pb.NewPeerServiceClient(conn).Ping(cctx, &pb.PingRequest{From: n.cfg.Name})
		cancel()
		r.SidecarOk = err == nil
		if err != nil {
			errs = append(errs, "sidecar: "+err.Error())
		}
	}
	if row.Kind == pb.NodeKind_NODE_KIND_DATA {
		if addr := pgctl.ConninfoAddr(row.Conninfo); addr != "" {
			c, err := net.DialTimeout("tcp", addr, timeout)
			if err == nil {
				r.PostgresOk = true
				_ = c.Close()
			} else {
				errs = append(errs, "postgres: "+err.Error())
			}
		}
	}
	r.Error = strings.Join(errs, "; ")
	return r
}
