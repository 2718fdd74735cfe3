package leader

import (
	"context"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The leader's view of the world (node/ wires Raft and gRPC behind these;
// a simulator or a test wires models). Every method is a synchronous call.

// Clock is the leader's only time source (internal/clock).
type Clock = clock.Clock

// Log is the replicated log as this node (the Raft leader) sees it.
type Log interface {
	// State is the latest applied cluster state; the caller must not modify it.
	State() *pb.ClusterState
	// Changed returns a channel closed at the next apply (used by Run only).
	Changed() <-chan struct{}
	// Lease is the lease as last applied here and when (Clock time) this node applied its latest serial.
	Lease() (*pb.Lease, time.Time)
	// Propose commits cmd, waiting at most timeout; a rejection by the FSM is an *fsm.Error.
	Propose(ctx context.Context, cmd *pb.Command, timeout time.Duration) (fsm.Result, error)
}

// Peers are the other sidecars, as the leader asks them.
type Peers interface {
	// LSNs asks each node's sidecar, in parallel, for its fresh WAL positions; nil for one that did not answer within timeout.
	LSNs(ctx context.Context, nodes []*pb.Node, term uint64, timeout time.Duration) []*pb.LSNResponse
	// Report is the latest monitoring report node id pushed here: its applied index and when (Clock time) it arrived.
	Report(id uint32) (appliedIndex uint64, at time.Time, ok bool)
}

// Raft is the consensus layer's membership and leadership.
type Raft interface {
	// Servers are the members of the latest configuration (voters and non-voters), in its order, and its log index.
	Servers() ([]Server, uint64, error)
	// AddVoter makes s a voter (a non-voter is promoted), once committed; refused unless the configuration is still at prevIndex (0: any).
	AddVoter(ctx context.Context, s Server, prevIndex uint64) error
	// DemoteVoter makes the voter id a non-voter, once committed; refused unless the configuration is still at prevIndex (0: any).
	DemoteVoter(ctx context.Context, id string, prevIndex uint64) error
	// AppliedIndex is the last log index applied on this node.
	AppliedIndex() uint64
	// TransferLeadership hands Raft leadership to the voter to.
	TransferLeadership(to Server) error
}

// Server is a Raft member: its server id (the node name), Raft address and suffrage.
type Server struct {
	ID, Address string
	Voter       bool
}
