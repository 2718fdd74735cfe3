package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/internal/history"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// historyDir is where a sidecar keeps its own monitoring history.
func (n *Node) historyDir() string { return filepath.Join(n.cfg.StateDir, "history") }

// historyLoop samples this sidecar every monitoring.history_interval into
// its history on disk and prunes it to monitoring.history_retention once
// an hour (and at start).
func (n *Node) historyLoop(ctx context.Context) {
	every := n.cfg.Monitoring.HistoryInterval.D()
	retention := n.cfg.Monitoring.HistoryRetention.D()
	t := time.NewTicker(every)
	defer t.Stop()
	nextPrune := time.Now()
	for {
		if now := time.Now(); !now.Before(nextPrune) {
			if removed, err := n.history.Prune(now.Add(-retention)); err != nil {
				n.logger.Warn("monitoring history: prune", "error", err)
			} else if removed > 0 {
				n.logger.Debug("monitoring history pruned", "removed", removed, "retention", retention)
			}
			nextPrune = now.Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.ID() == 0 {
			continue
		}
		r := proto.Clone(n.buildReport()).(*pb.NodeReport)
		r.Peers = nil // the matrix's business, not the history's
		if err := n.history.Append(r); err != nil {
			n.logger.Warn("monitoring history: append", "error", err)
		}
	}
}

// History answers this sidecar's own samples, newest first.
func (s *nodeService) History(_ context.Context, req *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	if req.Limit < 0 {
		return nil, invalid("limit must be 0 (all) or more")
	}
	var since time.Time
	if req.SinceUnixMs > 0 {
		since = time.UnixMilli(req.SinceUnixMs)
	}
	samples, err := s.n.history.Read(since, int(req.Limit))
	if err != nil && !errors.Is(err, history.ErrCorrupt) {
		return nil, fmt.Errorf("monitoring history: %w", err)
	}
	if err != nil {
		s.n.logger.Warn("monitoring history: a damaged segment was read up to the damage", "error", err)
	}
	return &pb.HistoryResponse{Samples: samples}, nil
}

// Cleanup prunes this sidecar's history to the last keep_ms.
func (s *nodeService) Cleanup(_ context.Context, req *pb.CleanupRequest) (*pb.CleanupResponse, error) {
	if req.KeepMs < 0 {
		return nil, invalid("keep-history must not be negative")
	}
	removed, err := s.n.history.Prune(time.Now().Add(-time.Duration(req.KeepMs) * time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("monitoring history: %w", err)
	}
	return &pb.CleanupResponse{Removed: int64(removed)}, nil
}
