package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/pki"
)

// LoadTLS loads the certificate store named by c; nil when TLS is off.
func LoadTLS(c config.TLSConfig) (*pki.Store, error) {
	if !c.Enabled() {
		return nil, nil
	}
	s, err := pki.Load(pki.Files{CA: c.CAFile, Cert: c.CertFile, Key: c.KeyFile})
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return s, nil
}

// DialOptions returns the transport credentials for a client of a sidecar
// (the CLI): it verifies that the server is a node of any cluster the CA
// signs for.
func DialOptions(c config.TLSConfig) ([]grpc.DialOption, error) {
	s, err := LoadTLS(c)
	if err != nil {
		return nil, err
	}
	return dialOptions(s, ""), nil
}

func dialOptions(s *pki.Store, cluster string) []grpc.DialOption {
	if s == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(&clientCreds{store: s, cluster: cluster})}
}

// clientCreds are gRPC client credentials that build the TLS config from
// the material the store loaded last on every handshake, so a renewed
// certificate is used on the next connection without a restart.
type clientCreds struct {
	store   *pki.Store
	cluster string
}

func (c *clientCreds) tls() credentials.TransportCredentials {
	return credentials.NewTLS(c.store.ClientConfig(c.cluster))
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.tls().ClientHandshake(ctx, authority, raw)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo { return c.tls().Info() }

func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

func (c *clientCreds) OverrideServerName(string) error { return nil }

// tlsWatchInterval is how often the sidecar looks for renewed certificate
// files (a stat of three files).
const tlsWatchInterval = 30 * time.Second

// tlsOffWarnInterval repeats the warning of a cluster running without TLS.
const tlsOffWarnInterval = time.Hour

// tlsLoop reloads renewed certificate files every tlsWatchInterval (SIGHUP
// does at once: reloadConfig) and, with TLS off, repeats the warning every
// hour.
func (n *Node) tlsLoop(ctx context.Context) {
	every, do := tlsWatchInterval, n.reloadTLS
	if n.tls == nil {
		every, do = tlsOffWarnInterval, n.warnTLSOff
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		do()
	}
}

func (n *Node) reloadTLS() {
	if n.tls == nil {
		return
	}
	changed, err := n.tls.Reload()
	switch {
	case err != nil:
		n.logger.Error("tls: renewed certificate files not loaded; still using the previous ones", "error", err)
	case changed:
		n.logger.Info("tls: certificate files reloaded", "cert", n.tls.Files().Cert, "not_after", n.tls.NotAfter().UTC().Format(time.RFC3339))
	}
	n.metrics.setCertExpiry(n.tls.NotAfter())
}

func (n *Node) warnTLSOff() {
	n.logger.Warn("tls.mode is off: anyone who can reach this host's loopback addresses can change, pause or join this cluster; use mutual TLS (hasidecar tls init) outside a lab",
		"raft", n.cfg.Raft.Listen, "grpc", n.cfg.GRPC.Listen)
}

// identifyNode is the Raft transport's mapping of a verified peer
// certificate to the server id its RPCs must carry: the node name of a node
// certificate of this cluster.
func (n *Node) identifyNode(cs tls.ConnectionState) (string, error) {
	id, err := pki.FromConnState(cs)
	if err != nil {
		return "", err
	}
	if err := pki.ExpectNode(id, n.cfg.Cluster); err != nil {
		return "", err
	}
	return id.Name, nil
}

// checkOwnCertificate refuses to start with a certificate that is not this
// node's: its peers would refuse every call (a node speaks only under the
// name in its certificate), so say so at once.
func checkOwnCertificate(id pki.Identity, cfg *config.Config) error {
	want := pki.Identity{Cluster: cfg.Cluster, Role: pki.RoleNode, Name: cfg.Name}
	if id != want {
		return fmt.Errorf("tls.cert_file %s is the certificate of %s of cluster %q, but this config is node %q of cluster %q: give this node its own certificate (hasidecar tls issue --node %s=ADDRESS)",
			cfg.TLS.CertFile, id, id.Cluster, cfg.Name, cfg.Cluster, cfg.Name)
	}
	return nil
}
