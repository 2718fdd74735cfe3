package main

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// noLeaderConfig answers no_leader (a follower during an election) to its
// first noLeader calls of ConfigService.Show.
type noLeaderConfig struct {
	pb.UnimplementedConfigServiceServer
	noLeader int32
	calls    atomic.Int32
}

func (s *noLeaderConfig) Show(context.Context, *pb.ConfigShowRequest) (*pb.ConfigShowResponse, error) {
	if s.calls.Add(1) <= s.noLeader {
		return nil, status.Error(codes.Unavailable, "no_leader: no raft leader: the cluster has no quorum right now")
	}
	return &pb.ConfigShowResponse{Settings: &pb.Settings{ConfigVersion: 7}, AnsweredBy: "pg1"}, nil
}

func serveConfig(t *testing.T, s pb.ConfigServiceServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterConfigServiceServer(srv, s)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return l.Addr().String()
}

// TestNoLeaderAskAgain: a follower that knows no Raft leader answers
// no_leader before doing anything; the CLI asks again through a short
// election and gives up after noLeaderWait with a line that says so.
func TestNoLeaderAskAgain(t *testing.T) {
	t.Run("an election ends", func(t *testing.T) {
		s := &noLeaderConfig{noLeader: 3}
		out, _, err := runCLI(t, "config", "show", "--json", "--addr", serveConfig(t, s))
		if err != nil {
			t.Fatalf("config show: %v", err)
		}
		if got := s.calls.Load(); got != 4 || !strings.Contains(out, `"version": 7`) {
			t.Fatalf("%d calls, printed %q: want 4 calls and version 7", got, out)
		}
	})
	t.Run("no quorum", func(t *testing.T) {
		s := &noLeaderConfig{noLeader: 1 << 30}
		_, cobraOut, err := runCLI(t, "config", "show", "--json", "--addr", serveConfig(t, s))
		if err == nil || !strings.Contains(err.Error(), "no Raft leader after 5") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("error %v: want one saying there was no leader for %s", err, noLeaderWait)
		}
		if calls := s.calls.Load(); calls < 10 {
			t.Errorf("asked %d times in %s", calls, noLeaderWait)
		}
		if !strings.Contains(cobraOut, "asking again for up to 5s") {
			t.Errorf("no progress line: %q", cobraOut)
		}
	})
}
