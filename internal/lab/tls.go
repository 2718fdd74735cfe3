package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/pki"
)

// TLSDir is where the lab keeps its cluster CA and certificates (made by
// Write, as `hasidecar tls init` would): every node runs mutual TLS, and
// every node's config names the operator certificate for the CLI (ctl:).
func (l *Lab) TLSDir() string { return filepath.Join(l.Spec.Dir, "tls") }

// SetTLS gives a node's config the lab's tls: and ctl: sections (its own
// certificate, the operator's for the CLI); Write issues the certificates.
func (l *Lab) SetTLS(c *config.Config) {
	dir := l.TLSDir()
	c.TLS = config.TLSConfig{Mode: config.TLSModeOn, CAFile: filepath.Join(dir, pki.CACertFile),
		CertFile: filepath.Join(dir, pki.CertFile(c.Name)), KeyFile: filepath.Join(dir, pki.KeyFile(c.Name))}
	c.Ctl = config.CtlConfig{CertFile: filepath.Join(dir, pki.CertFile(pki.DefaultOperator)), KeyFile: filepath.Join(dir, pki.KeyFile(pki.DefaultOperator))}
}

// writeCerts makes the lab's CA and a certificate per node on first use,
// and issues certificates for nodes added since.
func (l *Lab) writeCerts() error {
	dir := l.TLSDir()
	var nodes []pki.NodeSpec
	for _, n := range l.Nodes {
		nodes = append(nodes, pki.NodeSpec{Name: n.Name, Addrs: []string{n.Host}})
	}
	if _, err := os.Stat(filepath.Join(dir, pki.CAKeyFile)); os.IsNotExist(err) {
		if _, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: l.cluster(), Nodes: nodes}); err != nil {
			return fmt.Errorf("lab certificates: %w", err)
		}
		return nil
	}
	for _, n := range nodes {
		if _, err := os.Stat(filepath.Join(dir, pki.CertFile(n.Name))); err == nil {
			continue
		}
		if _, err := pki.IssueOne(dir, pki.RoleNode, n.Name, n.Addrs, 0, time.Time{}); err != nil {
			return fmt.Errorf("lab certificate for %s: %w", n.Name, err)
		}
	}
	return nil
}

// cluster is the lab's cluster name.
func (l *Lab) cluster() string {
	if len(l.Nodes) > 0 && l.Nodes[0].Config != nil {
		return l.Nodes[0].Config.Cluster
	}
	return labCluster
}

const labCluster = "lab"

// credentials are what the lab's own clients (tests, benchmarks, lab
// status) use: the operator certificate, or plaintext when the lab's nodes
// run with tls.mode off.
func (l *Lab) credentials() (grpc.DialOption, error) {
	if len(l.Nodes) > 0 && l.Nodes[0].Config != nil && !l.Nodes[0].Config.TLS.Enabled() {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	dir := l.TLSDir()
	s, err := pki.Load(pki.Files{CA: filepath.Join(dir, pki.CACertFile), Cert: filepath.Join(dir, pki.CertFile(pki.DefaultOperator)), Key: filepath.Join(dir, pki.KeyFile(pki.DefaultOperator))})
	if err != nil {
		return nil, fmt.Errorf("the lab's operator certificate: %w", err)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(s.ClientConfig(l.cluster()))), nil
}
