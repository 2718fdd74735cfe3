package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// leftMarker, in state_dir, says this sidecar left its cluster (`node
// remove` told it): it refuses to start again with this state.
const leftMarker = "LEFT"

func (n *Node) leftPath() string { return filepath.Join(n.cfg.StateDir, leftMarker) }

// checkNotLeft refuses to start a sidecar that left its cluster: with its
// old Raft state it would try to take part in a cluster that removed it.
func (n *Node) checkNotLeft() error {
	b, err := os.ReadFile(n.leftPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", n.leftPath(), err)
	}
	return fmt.Errorf("this sidecar left cluster %q (%s); to add it again, delete %s and %s so that it joins afresh (its data directory is kept and checked when it joins); if `cluster show` still lists it, run `hasidecar node remove --name %s` first",
		n.cfg.Cluster, strings.TrimSpace(string(b)), filepath.Join(n.cfg.StateDir, "raft"), n.leftPath(), n.cfg.Name)
}

// Leave (an operator's `node remove` of this live node): refuse on the
// primary; else mark the state_dir as left and end the process as on
// SIGTERM, which stops Postgres cleanly (its keeper does not restart it)
// and keeps the data directory as it is.
func (s *nodeService) Leave(_ context.Context, req *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	n := s.n
	st := n.fsm.State()
	me := fsm.NodeByName(st, n.cfg.Name)
	if me != nil && me.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
		return nil, status.Errorf(codes.FailedPrecondition, "%s is the primary: switch over to another node before removing it", n.cfg.Name)
	}
	why := strings.TrimSpace(req.Reason)
	if why == "" {
		why = "node remove"
	}
	text := fmt.Sprintf("left at %s: %s\n", time.Now().UTC().Format(time.RFC3339), why)
	if err := os.WriteFile(n.leftPath(), []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("mark %s as left: %w", n.cfg.StateDir, err)
	}
	dataDir := ""
	if n.cfg.Postgres != nil {
		dataDir = n.cfg.Postgres.DataDir
	}
	n.logger.Warn("leaving the cluster: stopping Postgres cleanly and exiting; the data directory is kept untouched", "reason", why, "data_dir", dataDir)
	n.requestExit()
	return &pb.LeaveResponse{DataDir: dataDir}, nil
}

// requestExit ends Run as a cancelled context would (once).
func (n *Node) requestExit() {
	n.exitOnce.Do(func() { close(n.exitCh) })
}
