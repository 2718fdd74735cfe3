// Package pki issues and reads the certificates of a hasidecar cluster: one
// cluster CA, a certificate per node, and operator and monitor certificates
// for people and tools. Everything is crypto/x509 from the standard library.
//
// An identity is carried in a URI SAN, hasidecar://CLUSTER/ROLE/NAME, and
// repeated in the subject (CN=NAME, OU=ROLE, O=CLUSTER) for people reading
// the certificate. Only the URI SAN is trusted: a certificate without
// exactly one hasidecar URI is no identity at all.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Role is what a certificate may do.
type Role string

const (
	// RoleNode is a sidecar: PeerService and the Raft transport, read verbs.
	RoleNode Role = "node"
	// RoleOperator may call every ClusterService and NodeService verb.
	RoleOperator Role = "operator"
	// RoleMonitor may call read verbs only.
	RoleMonitor Role = "monitor"
)

// URIScheme is the scheme of the identity SAN.
const URIScheme = "hasidecar"

// ExpiryWarning is how close to its end a certificate is reported (node
// check, /metrics).
const ExpiryWarning = 30 * 24 * time.Hour

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidName reports whether s may be a cluster, node or client name in an
// identity (it becomes a path segment of the URI and a file name).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Identity is who a certificate speaks for.
type Identity struct {
	Cluster string
	Role    Role
	Name    string
}

// String is how denials name the caller: "pg9" (monitor).
func (id Identity) String() string { return fmt.Sprintf("%q (%s)", id.Name, id.Role) }

// URI is the SAN that carries the identity.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: URIScheme, Host: id.Cluster, Path: "/" + string(id.Role) + "/" + id.Name}
}

func (id Identity) validate() error {
	if !ValidName(id.Cluster) {
		return fmt.Errorf("cluster name %q: use letters, digits, '.', '_' or '-' (at most 63)", id.Cluster)
	}
	if !ValidName(id.Name) {
		return fmt.Errorf("name %q: use letters, digits, '.', '_' or '-' (at most 63)", id.Name)
	}
	switch id.Role {
	case RoleNode, RoleOperator, RoleMonitor:
	default:
		return fmt.Errorf("role %q: want node, operator or monitor", id.Role)
	}
	return nil
}

// ParseURI reads an identity from a hasidecar:// URI.
func ParseURI(u *url.URL) (Identity, error) {
	if u.Scheme != URIScheme {
		return Identity{}, fmt.Errorf("URI %s is not a %s:// identity", u, URIScheme)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return Identity{}, fmt.Errorf("URI %s: want %s://CLUSTER/ROLE/NAME", u, URIScheme)
	}
	id := Identity{Cluster: u.Host, Role: Role(parts[0]), Name: parts[1]}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("URI %s: %w", u, err)
	}
	return id, nil
}

// FromCert reads the identity of a certificate: exactly one hasidecar URI SAN.
func FromCert(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		id, err := ParseURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("certificate %q carries no %s:// identity (issue it with `hasidecar tls init` or `hasidecar tls issue`)", c.Subject.CommonName, URIScheme)
	case 1:
		return found[0], nil
	}
	return Identity{}, fmt.Errorf("certificate %q carries %d %s:// identities; want one", c.Subject.CommonName, len(found), URIScheme)
}

// FromConnState is the identity of a TLS peer whose chain was verified.
func FromConnState(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, errors.New("the peer presented no verified certificate")
	}
	return FromCert(cs.VerifiedChains[0][0])
}

// CA is a cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

// NewCA makes a self-signed ECDSA P-256 CA for a cluster.
func NewCA(cluster string, validity time.Duration, now time.Time) (*CA, error) {
	if !ValidName(cluster) {
		return nil, fmt.Errorf("cluster name %q: use letters, digits, '.', '_' or '-' (at most 63)", cluster)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "hasidecar CA " + cluster, Organization: []string{cluster}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Leaf is an issued certificate and its key, PEM-encoded.
type Leaf struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// Issue signs a certificate for id. Node certificates carry their addresses:
// IP literals become IP SANs, anything else a DNS SAN; both client and server
// use. Operator and monitor certificates are client-only.
func (ca *CA) Issue(id Identity, addrs []string, validity time.Duration, now time.Time) (*Leaf, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	if ca.Cert.Subject.Organization == nil || ca.Cert.Subject.Organization[0] != id.Cluster {
		return nil, fmt.Errorf("this CA belongs to cluster %q, not %q", firstOr(ca.Cert.Subject.Organization), id.Cluster)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", id.Name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.Name, OrganizationalUnit: []string{string(id.Role)}, Organization: []string{id.Cluster}},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{id.URI()},
	}
	if id.Role == RoleNode {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, a := range addrs {
			if ip := net.ParseIP(a); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if a != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, a)
			}
		}
		if len(tmpl.IPAddresses)+len(tmpl.DNSNames) == 0 {
			return nil, fmt.Errorf("node %s: give at least one address (IP or host name) its peers dial", id.Name)
		}
	} else if len(addrs) > 0 {
		return nil, fmt.Errorf("%s certificate %s: only node certificates carry addresses", id.Role, id.Name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
	}, nil
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s, nil
}

// File names inside a certificate directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CertFile and KeyFile are the file names of a certificate named name.
func CertFile(name string) string { return name + ".crt" }

// KeyFile is the private key beside CertFile.
func KeyFile(name string) string { return name + ".key" }

// Save writes the CA's certificate and key into dir (0600).
func (ca *CA) Save(dir string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), ca.PEM); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// Save writes the leaf as NAME.crt and NAME.key into dir (0600).
func (l *Leaf) Save(dir, name string) error {
	if err := writeFile(filepath.Join(dir, CertFile(name)), l.CertPEM); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, KeyFile(name)), l.KeyPEM)
}

// writeFile writes data with mode 0600 through a temporary file, so a reader
// (a sidecar reloading its certificate) never sees half a file.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoadCA reads ca.crt and ca.key from dir.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	if err := CheckKeyFile(filepath.Join(dir, CAKeyFile)); err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load the cluster CA from %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate with its key", filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: cert, Key: signer, PEM: certPEM}, nil
}

// CheckKeyFile refuses a private key that others can read, as ssh does.
func CheckKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("key file %s is readable by others (mode %04o); chmod 600 it", path, m)
	}
	return nil
}

// NotAfter is the expiry of the first certificate in a PEM file.
func NotAfter(certPEM []byte) (time.Time, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return time.Time{}, errors.New("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}
