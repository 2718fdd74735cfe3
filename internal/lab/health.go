package lab

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Show asks any running member for cluster show, trying each in turn.
func (l *Lab) Show(ctx context.Context) (*pb.ShowResponse, error) {
	var last error
	for _, n := range l.Nodes {
		resp, err := l.ShowAt(ctx, n.GRPCAddr())
		if err == nil {
			return resp, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no lab member answered: %w", last)
}

// Dial connects to one of this lab's sidecars with the lab's operator
// certificate (from the client namespace when the lab has its own network).
func (l *Lab) Dial(addr string) (*grpc.ClientConn, error) {
	creds, err := l.credentials()
	if err != nil {
		return nil, err
	}
	if l.Spec.Net == nil {
		return grpc.NewClient(addr, creds)
	}
	return grpc.NewClient("passthrough:///"+addr, creds,
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return l.Spec.Net.DialContext(ctx, "tcp", a) }))
}

// ShowAt asks one of this lab's sidecars for cluster show.
func (l *Lab) ShowAt(ctx context.Context, addr string) (*pb.ShowResponse, error) {
	conn, err := l.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return pb.NewClusterServiceClient(conn).Show(cctx, &pb.ShowRequest{})
}

// Healthy reports whether the view shows every lab member, one running
// primary and every other data node a running standby that streams from it,
// and says what is missing otherwise.
func (l *Lab) Healthy(v *pb.ShowResponse) (bool, string) {
	if v.RaftLeader == "" {
		return false, "no raft leader"
	}
	byName := map[string]*pb.NodeView{}
	for _, n := range v.Nodes {
		byName[n.Name] = n
	}
	var missing []string
	primaries := 0
	for _, n := range l.Nodes {
		row := byName[n.Name]
		switch {
		case row == nil:
			missing = append(missing, n.Name+" not registered")
		case row.Status != "running":
			missing = append(missing, fmt.Sprintf("%s %s", n.Name, row.Status))
		case n.Witness:
		case row.Role == pb.NodeRole_NODE_ROLE_PRIMARY:
			primaries++
		case row.Role != pb.NodeRole_NODE_ROLE_STANDBY:
			missing = append(missing, n.Name+" not yet a standby")
		case row.Postgres.GetWalReceiverStatus() != "streaming":
			missing = append(missing, n.Name+" not streaming")
		}
	}
	if primaries != 1 {
		missing = append(missing, fmt.Sprintf("%d running primaries", primaries))
	}
	if len(missing) > 0 {
		return false, strings.Join(missing, ", ")
	}
	return true, ""
}

// WaitHealthy polls until Healthy or the context ends.
func (l *Lab) WaitHealthy(ctx context.Context) (*pb.ShowResponse, error) {
	why := "no answer yet"
	for {
		v, err := l.Show(ctx)
		if err == nil {
			ok, w := l.Healthy(v)
			if ok {
				return v, nil
			}
			why = w
		} else {
			why = err.Error()
		}
		if sleep(ctx, 250*time.Millisecond) != nil {
			return nil, fmt.Errorf("the lab did not become healthy: %s (see the logs in %s)", why, l.Spec.Dir)
		}
	}
}

// Up writes the configs, starts every node and waits until the cluster is
// healthy. A lab that is already running is refused.
func (l *Lab) Up(ctx context.Context) (*pb.ShowResponse, error) {
	if r := l.Running(); len(r) > 0 {
		return nil, fmt.Errorf("a lab is already running in %s (%d sidecars): `hasidecar lab down` first", l.Spec.Dir, len(r))
	}
	if err := l.Write(); err != nil {
		return nil, err
	}
	for _, n := range l.Nodes {
		if err := l.Start(n); err != nil {
			_ = l.Down(10 * time.Second)
			return nil, err
		}
	}
	return l.WaitHealthy(ctx)
}
