package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names the three PEM files of one party.
type Files struct {
	CA   string
	Cert string
	Key  string
}

// Store holds a party's certificate, key and trusted CAs, and reloads them
// when the files change: renewing a certificate needs no restart. Every new
// TLS handshake uses what was loaded last; a reload that fails keeps the old
// material (and says why).
type Store struct {
	files Files

	mu   sync.RWMutex
	cur  *material
	seen stamps
}

type material struct {
	cert tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
	id   Identity
}

type stamp struct {
	mod  time.Time
	size int64
}

type stamps [3]stamp

func (f Files) stamps() (stamps, error) {
	var s stamps
	for i, p := range []string{f.CA, f.Cert, f.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			return s, err
		}
		s[i] = stamp{fi.ModTime(), fi.Size()}
	}
	return s, nil
}

// Load reads the files (the key must be readable by its owner only) and
// checks that the certificate chains to the CA and carries an identity.
func Load(f Files) (*Store, error) {
	s := &Store{files: f}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again if any of them changed since the last load.
// It reports whether new material is in use.
func (s *Store) Reload() (bool, error) {
	st, err := s.files.stamps()
	if err != nil {
		return false, fmt.Errorf("tls files: %w", err)
	}
	s.mu.RLock()
	same := s.cur != nil && st == s.seen
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	m, err := loadMaterial(s.files)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.cur, s.seen = m, st
	s.mu.Unlock()
	return true, nil
}

func loadMaterial(f Files) (*material, error) {
	if err := CheckKeyFile(f.Key); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate %s: %w", f.Cert, err)
	}
	cert.Leaf = leaf
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", f.CA)
	}
	id, err := FromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Cert, err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("certificate %s is not signed by the CA in %s: %w", f.Cert, f.CA, err)
	}
	return &material{cert: cert, leaf: leaf, pool: pool, id: id}, nil
}

func (s *Store) material() *material {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

// Identity is whom this party's certificate names.
func (s *Store) Identity() Identity { return s.material().id }

// NotAfter is when this party's certificate expires.
func (s *Store) NotAfter() time.Time { return s.material().leaf.NotAfter }

// Files are the paths this store reads.
func (s *Store) Files() Files { return s.files }

// ServerConfig requires and verifies a client certificate from the CA; each
// handshake takes the material loaded last.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.material()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{m.cert},
				ClientCAs:    m.pool,
				ClientAuth:   tls.RequireAndVerifyClientCert,
			}, nil
		},
	}
}

// ClientConfig verifies the server against the CA and its host name, and then
// that it is a node of cluster (any cluster when cluster is ""). Call it for
// every new connection: it holds the material loaded last.
func (s *Store) ClientConfig(cluster string) *tls.Config {
	m := s.material()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		RootCAs:      m.pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := FromConnState(cs)
			if err != nil {
				return fmt.Errorf("the server's certificate: %w", err)
			}
			return ExpectNode(id, cluster)
		},
	}
}

// ExpectNode checks that id is a node of cluster ("" matches any).
func ExpectNode(id Identity, cluster string) error {
	if id.Role != RoleNode {
		return fmt.Errorf("the peer's certificate is a %s certificate (%s), not a node's", id.Role, id.Name)
	}
	if cluster != "" && id.Cluster != cluster {
		return fmt.Errorf("the peer %q belongs to cluster %q, not %q", id.Name, id.Cluster, cluster)
	}
	return nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
