package benchkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hasidecar/hasidecar/internal/lab"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// EventsAt asks one sidecar for the cluster events of a type ("" for all),
// newest first.
func (e *Env) EventsAt(ctx context.Context, addr, typ string) ([]*pb.Event, error) {
	conn, err := e.Lab.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := pb.NewClusterServiceClient(conn).Events(cctx, &pb.EventsRequest{EventType: typ})
	if err != nil {
		return nil, fmt.Errorf("cluster events from %s: %w", addr, err)
	}
	return resp.Events, nil
}

// Events asks the running members in turn, skipping the ones in skip, for
// the events of a type that were recorded after log index after.
func (e *Env) Events(ctx context.Context, typ string, after uint64, skip ...*lab.Node) ([]*pb.Event, error) {
	var last error = fmt.Errorf("no running member to ask")
next:
	for _, n := range e.Lab.Nodes {
		for _, s := range skip {
			if n == s {
				continue next
			}
		}
		evs, err := e.EventsAt(ctx, n.GRPCAddr(), typ)
		if err != nil {
			last = err
			continue
		}
		var out []*pb.Event
		for _, ev := range evs {
			if ev.Index > after {
				out = append(out, ev)
			}
		}
		return out, nil
	}
	return nil, last
}

// ShowExcept asks the members not in skip for cluster show: after a host is
// killed, asking it first would only cost a timeout.
func (e *Env) ShowExcept(ctx context.Context, skip *lab.Node) (*pb.ShowResponse, error) {
	var last error = fmt.Errorf("no running member to ask")
	for _, n := range e.Lab.Nodes {
		if n == skip {
			continue
		}
		v, err := e.Lab.ShowAt(ctx, n.GRPCAddr())
		if err == nil {
			return v, nil
		}
		last = err
	}
	return nil, fmt.Errorf("cluster show: %w", last)
}

// DumpLogs prints the last lines of every node's sidecar and Postgres log on
// stderr, for a failed trial.
func (e *Env) DumpLogs(lines int) {
	for _, n := range e.Lab.Nodes {
		for _, p := range []string{n.LogPath, filepath.Join(n.Dir, "postgres.log")} {
			t := Tail(p, lines)
			if len(t) == 0 {
				continue
			}
			fmt.Fprintf(os.Stderr, "==== %s: last %d lines of %s\n", n.Name, len(t), p)
			for _, l := range t {
				fmt.Fprintf(os.Stderr, "%s| %s\n", n.Name, l)
			}
		}
	}
}

// Tail is the last n lines of a file (see lab.Tail).
func Tail(path string, n int) []string { return lab.Tail(path, n) }

// CopyLogs copies every node's sidecar and Postgres log into dir/NODE/
// (failures are logged: a missing log is not an error of the trial).
func (e *Env) CopyLogs(dir string) {
	for _, n := range e.Lab.Nodes {
		for _, p := range []string{n.LogPath, filepath.Join(n.Dir, "postgres.log")} {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			to := filepath.Join(dir, n.Name, filepath.Base(p))
			err = os.MkdirAll(filepath.Dir(to), 0o755)
			if err == nil {
				err = os.WriteFile(to, b, 0o644)
			}
			if err != nil {
				Logf("copy %s: %v", p, err)
			}
		}
	}
}
