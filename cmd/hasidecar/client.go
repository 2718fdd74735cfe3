package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/pki"
	"github.com/hasidecar/hasidecar/node"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// defaultConfigPath is read when neither -c nor --addr is given.
const defaultConfigPath = "/etc/hasidecar/hasidecar.yaml"

// target is which sidecar a CLI verb talks to.
type target struct {
	configPath string
	addr       string
	timeout    time.Duration
	jsonOut    bool
	tls        config.TLSConfig
}

func (t *target) flags(cmd *cobra.Command, withJSON bool) {
	cmd.Flags().StringVarP(&t.configPath, "config", "c", "", "a sidecar's config file (its gRPC address and TLS files are used)")
	cmd.Flags().StringVar(&t.addr, "addr", "", "a sidecar's gRPC address HOST:PORT (default: $HASIDECAR_ADDR, or the address in -c)")
	cmd.Flags().DurationVar(&t.timeout, "rpc-timeout", 10*time.Second, "how long to wait for the sidecar's answer")
	cmd.Flags().StringVar(&t.tls.CAFile, "tls-ca", "", "the cluster CA certificate (default: from -c, or $"+envTLSDir+"/ca.crt)")
	cmd.Flags().StringVar(&t.tls.CertFile, "tls-cert", "", "your certificate: operator, or monitor for read verbs (default: ctl.cert_file from -c, or $"+envTLSDir+"/operator.crt)")
	cmd.Flags().StringVar(&t.tls.KeyFile, "tls-key", "", "your certificate's key (default: from -c, or $"+envTLSDir+")")
	if withJSON {
		cmd.Flags().BoolVar(&t.jsonOut, "json", false, "print JSON")
	}
}

// envTLSDir names a directory made by `hasidecar tls init`: the CLI takes
// ca.crt and operator.crt (else monitor.crt) from it.
const envTLSDir = "HASIDECAR_TLS_DIR"

// tlsFromDir picks the CLI's certificate from a `tls init` directory; TLS
// stays off when dir is "".
func tlsFromDir(dir string) (config.TLSConfig, error) {
	if dir == "" {
		return config.TLSConfig{Mode: config.TLSModeOff}, nil
	}
	for _, name := range []string{pki.DefaultOperator, pki.DefaultMonitor} {
		cert := filepath.Join(dir, pki.CertFile(name))
		if _, err := os.Stat(cert); err == nil {
			return config.TLSConfig{Mode: config.TLSModeOn, CAFile: filepath.Join(dir, pki.CACertFile), CertFile: cert, KeyFile: filepath.Join(dir, pki.KeyFile(name))}, nil
		}
	}
	return config.TLSConfig{}, fmt.Errorf("$%s=%s holds neither %s nor %s", envTLSDir, dir, pki.CertFile(pki.DefaultOperator), pki.CertFile(pki.DefaultMonitor))
}

// client is a connection to one sidecar.
type client struct {
	addr    string
	conn    *grpc.ClientConn
	cluster pb.ClusterServiceClient
	node    pb.NodeServiceClient
	config  pb.ConfigServiceClient
	timeout time.Duration
	opts    []grpc.DialOption
	plain   bool // no TLS
}

func (t *target) dial() (*client, error) {
	addr := t.addr
	var tlsCfg config.TLSConfig
	path := t.configPath
	if path == "" && addr == "" {
		addr = os.Getenv("HASIDECAR_ADDR")
		if addr == "" {
			if _, err := os.Stat(defaultConfigPath); err == nil {
				path = defaultConfigPath
			}
		}
	}
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		tlsCfg = cfg.Client()
		if addr == "" {
			addr = cfg.GRPCAdvertise()
		}
	}
	if addr == "" {
		return nil, errors.New("no sidecar to ask: pass -c FILE or --addr HOST:PORT (or set HASIDECAR_ADDR)")
	}
	switch {
	case t.tls.HasFiles():
		if t.tls.CAFile == "" || t.tls.CertFile == "" || t.tls.KeyFile == "" {
			return nil, errors.New("give all three of --tls-ca, --tls-cert and --tls-key, or none")
		}
		tlsCfg = t.tls
	case path != "":
	default:
		var err error
		if tlsCfg, err = tlsFromDir(os.Getenv(envTLSDir)); err != nil {
			return nil, err
		}
	}
	if t.timeout <= 0 {
		return nil, fmt.Errorf("--rpc-timeout must be positive, not %s", t.timeout)
	}
	opts, err := node.DialOptions(tlsCfg)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("sidecar address %s: %w", addr, err)
	}
	return &client{addr: addr, conn: conn, cluster: pb.NewClusterServiceClient(conn), node: pb.NewNodeServiceClient(conn), config: pb.NewConfigServiceClient(conn), timeout: t.timeout, opts: opts, plain: !tlsCfg.Enabled()}, nil
}

// redial connects the client to another sidecar (the Raft leader) with the
// same credentials.
func (c *client) redial(addr string) error {
	conn, err := grpc.NewClient(addr, c.opts...)
	if err != nil {
		return fmt.Errorf("sidecar address %s: %w", addr, err)
	}
	_ = c.conn.Close()
	c.addr, c.conn = addr, conn
	c.cluster, c.node, c.config = pb.NewClusterServiceClient(conn), pb.NewNodeServiceClient(conn), pb.NewConfigServiceClient(conn)
	return nil
}

func (c *client) close() { _ = c.conn.Close() }

// do dials the sidecar, runs fn with a context bounded by --rpc-timeout and
// turns a gRPC error into one line that says what to do.
func (t *target) do(cmd *cobra.Command, fn func(ctx context.Context, c *client) error) error {
	c, err := t.dial()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := c.ctx(cmd.Context())
	defer cancel()
	if err := c.leaderCall(ctx, cmd.ErrOrStderr(), fn); err != nil {
		return c.explain(err)
	}
	return nil
}

// leaderCall runs fn. A verb that only the Raft leader takes is answered
// not_leader by a follower: fn runs again against the leader (at most two
// hops), which then checks our own certificate. A follower that knows no
// leader (an election, as when the primary's sidecar hands leadership
// away) answers no_leader: fn runs again for up to noLeaderWait, saying so
// on stderr after a second. Both answers come before the follower did
// anything, so running fn again is safe.
func (c *client) leaderCall(ctx context.Context, stderr io.Writer, fn func(ctx context.Context, c *client) error) error {
	began := time.Now()
	said := false
	for hops := 0; ; {
		err := fn(ctx, c)
		if why, ok := node.NoLeaderYet(err); ok {
			if time.Since(began) >= noLeaderWait || ctx.Err() != nil {
				return fmt.Errorf("no Raft leader after %s (the sidecar at %s says: %s): the cluster has no quorum; see `hasidecar cluster show` on each node, nothing was changed", time.Since(began).Round(100*time.Millisecond), c.addr, why)
			}
			if !said && time.Since(began) >= time.Second {
				fmt.Fprintf(stderr, "no Raft leader right now (an election?); asking again for up to %s ...\n", noLeaderWait)
				said = true
			}
			select {
			case <-ctx.Done():
			case <-time.After(noLeaderRetry):
			}
			continue
		}
		leader, redirect := node.LeaderRedirect(err)
		if !redirect || hops == 2 || leader == c.addr {
			return err
		}
		hops++
		if err := c.redial(leader); err != nil {
			return err
		}
	}
}

// How long and how often a command asks again while a follower knows no
// Raft leader: an election takes one to three heartbeat timeouts (500 ms
// by default); a leadership transfer, less.
const (
	noLeaderWait  = 5 * time.Second
	noLeaderRetry = 200 * time.Millisecond
)

func (c *client) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, c.timeout)
}

// explain turns a gRPC error into one line that says what to do.
func (c *client) explain(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		if c.plain {
			return fmt.Errorf("cannot reach the sidecar at %s: %s (is `hasidecar agent` running there? It requires mutual TLS unless its tls.mode is off: pass -c FILE, --tls-ca/--tls-cert/--tls-key, or set $%s)", c.addr, st.Message(), envTLSDir)
		}
		return fmt.Errorf("cannot reach the sidecar at %s: %s (is `hasidecar agent` running there?)", c.addr, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("the sidecar at %s did not answer in time (%s)", c.addr, st.Message())
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("%s (the sidecar at %s checked the certificate this command used; pass -c with a config whose ctl: names an operator certificate, --tls-cert/--tls-key, or $%s)", st.Message(), c.addr, envTLSDir)
	case codes.Unimplemented:
		return fmt.Errorf("the sidecar at %s does not know this call: is it an older version? (%s)", c.addr, st.Message())
	}
	return errors.New(st.Message())
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// memberAnswer is one member's outcome in forEachMember.
type memberAnswer struct {
	name string
	err  error
}

// forEachMember calls fn on every member of the cluster view (over its own
// connection, with this client's credentials, in parallel) and returns each
// member's outcome in the view's order: the CLI asks each sidecar itself
// rather than have one sidecar act for the operator with its own
// certificate.
func (c *client) forEachMember(ctx context.Context, view *pb.ShowResponse, only uint32, fn func(ctx context.Context, name string, node pb.NodeServiceClient) error) []memberAnswer {
	out := make([]memberAnswer, 0, len(view.GetNodes()))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range view.GetNodes() {
		if only != 0 && n.Id != only {
			continue
		}
		i := len(out)
		out = append(out, memberAnswer{name: n.Name})
		if n.GrpcAddress == "" {
			out[i].err = errors.New("no gRPC address registered")
			continue
		}
		wg.Add(1)
		go func(i int, name, addr string) {
			defer wg.Done()
			err := func() error {
				conn, err := grpc.NewClient(addr, c.opts...)
				if err != nil {
					return fmt.Errorf("sidecar address %s: %w", addr, err)
				}
				defer conn.Close()
				if err := fn(ctx, name, pb.NewNodeServiceClient(conn)); err != nil {
					return c.explain(err)
				}
				return nil
			}()
			mu.Lock()
			out[i].err = err
			mu.Unlock()
		}(i, n.Name, n.GrpcAddress)
	}
	wg.Wait()
	return out
}
