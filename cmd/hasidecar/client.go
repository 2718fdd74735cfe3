package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hasidecar/hasidecar/config"
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
	cmd.Flags().StringVar(&t.tls.CAFile, "tls-ca", "", "CA certificate for mutual TLS (default: from -c)")
	cmd.Flags().StringVar(&t.tls.CertFile, "tls-cert", "", "client certificate for mutual TLS (default: from -c)")
	cmd.Flags().StringVar(&t.tls.KeyFile, "tls-key", "", "client key for mutual TLS (default: from -c)")
	if withJSON {
		cmd.Flags().BoolVar(&t.jsonOut, "json", false, "print JSON")
	}
}

// client is a connection to one sidecar.
type client struct {
	addr    string
	conn    *grpc.ClientConn
	cluster pb.ClusterServiceClient
	node    pb.NodeServiceClient
	timeout time.Duration
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
		tlsCfg = cfg.TLS
		if addr == "" {
			addr = cfg.GRPCAdvertise()
		}
	}
	if addr == "" {
		return nil, errors.New("no sidecar to ask: pass -c FILE or --addr HOST:PORT (or set HASIDECAR_ADDR)")
	}
	if t.tls.Enabled() {
		tlsCfg = t.tls
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
	return &client{addr: addr, conn: conn, cluster: pb.NewClusterServiceClient(conn), node: pb.NewNodeServiceClient(conn), timeout: t.timeout}, nil
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
	if err := fn(ctx, c); err != nil {
		return c.explain(err)
	}
	return nil
}

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
		return fmt.Errorf("cannot reach the sidecar at %s: %s (is `hasidecar agent` running there?)", c.addr, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("the sidecar at %s did not answer in time (%s)", c.addr, st.Message())
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
