package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Default lifetimes: the CA outlives every certificate it signs.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// Default names of the client certificates `tls init` makes.
const (
	DefaultOperator = "operator"
	DefaultMonitor  = "monitor"
)

// NodeSpec is a node certificate to issue: its name and the addresses its
// peers dial (IPs or host names).
type NodeSpec struct {
	Name  string
	Addrs []string
}

// ParseNodeSpec reads NAME=ADDR[,ADDR...] as given to --node.
func ParseNodeSpec(s string) (NodeSpec, error) {
	name, addrs, ok := strings.Cut(s, "=")
	if !ok || name == "" || addrs == "" {
		return NodeSpec{}, fmt.Errorf("--node %q: want NAME=ADDRESS[,ADDRESS...], e.g. pg1=10.0.0.1", s)
	}
	if !ValidName(name) {
		return NodeSpec{}, fmt.Errorf("--node %q: node name %q: use letters, digits, '.', '_' or '-'", s, name)
	}
	spec := NodeSpec{Name: name}
	for _, a := range strings.Split(addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return NodeSpec{}, fmt.Errorf("--node %q: an empty address", s)
		}
		spec.Addrs = append(spec.Addrs, a)
	}
	return spec, nil
}

// InitOptions is what `hasidecar tls init` makes.
type InitOptions struct {
	Dir       string
	Cluster   string
	Nodes     []NodeSpec
	Operators []string // default: one named "operator"
	Monitors  []string // default: one named "monitor"
	CADays    time.Duration
	LeafDays  time.Duration
	Now       time.Time
}

// Init makes a cluster CA and every certificate in o inside o.Dir (created
// 0700; files 0600). It refuses a directory that already holds a CA, so a
// second run cannot replace the CA a running cluster trusts. It returns the
// files written.
func Init(o InitOptions) ([]string, error) {
	if o.Dir == "" {
		return nil, errors.New("--dir is required: where to write the CA and the certificates")
	}
	if len(o.Nodes) == 0 {
		return nil, errors.New("give at least one --node NAME=ADDRESS (every sidecar, witnesses included)")
	}
	if _, err := os.Stat(filepath.Join(o.Dir, CAKeyFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a cluster CA: nothing written. Add certificates with `hasidecar tls issue --dir %s`, re-issue one with `hasidecar tls renew`, or use a new directory to make a new CA", o.Dir, o.Dir)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.CADays == 0 {
		o.CADays = DefaultCAValidity
	}
	if o.LeafDays == 0 {
		o.LeafDays = DefaultLeafValidity
	}
	if o.Operators == nil {
		o.Operators = []string{DefaultOperator}
	}
	if o.Monitors == nil {
		o.Monitors = []string{DefaultMonitor}
	}
	seen := map[string]bool{CACertFile: true}
	var ids []issueReq
	for _, n := range o.Nodes {
		ids = append(ids, issueReq{Identity{o.Cluster, RoleNode, n.Name}, n.Addrs})
	}
	for _, n := range o.Operators {
		ids = append(ids, issueReq{Identity{o.Cluster, RoleOperator, n}, nil})
	}
	for _, n := range o.Monitors {
		ids = append(ids, issueReq{Identity{o.Cluster, RoleMonitor, n}, nil})
	}
	for _, r := range ids {
		if err := r.id.validate(); err != nil {
			return nil, err
		}
		if seen[CertFile(r.id.Name)] || r.id.Name == "ca" {
			return nil, fmt.Errorf("the name %q is used twice (every node, operator and monitor needs its own name)", r.id.Name)
		}
		seen[CertFile(r.id.Name)] = true
	}
	ca, err := NewCA(o.Cluster, o.CADays, o.Now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.Dir, err)
	}
	if err := ca.Save(o.Dir); err != nil {
		return nil, err
	}
	written := []string{filepath.Join(o.Dir, CACertFile), filepath.Join(o.Dir, CAKeyFile)}
	for _, r := range ids {
		leaf, err := ca.Issue(r.id, r.addrs, o.LeafDays, o.Now)
		if err != nil {
			return written, err
		}
		if err := leaf.Save(o.Dir, r.id.Name); err != nil {
			return written, err
		}
		written = append(written, filepath.Join(o.Dir, CertFile(r.id.Name)), filepath.Join(o.Dir, KeyFile(r.id.Name)))
	}
	return written, nil
}

type issueReq struct {
	id    Identity
	addrs []string
}

// IssueOne signs one more certificate with the CA in dir (a new node, a new
// operator). It refuses to overwrite an existing certificate of that name:
// `renew` is for that.
func IssueOne(dir string, role Role, name string, addrs []string, validity time.Duration, now time.Time) ([]string, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, CertFile(name))); err == nil {
		return nil, fmt.Errorf("%s already exists: nothing written (re-issue it with `hasidecar tls renew --dir %s --name %s`)", filepath.Join(dir, CertFile(name)), dir, name)
	}
	return issueAndSave(ca, dir, Identity{Cluster: firstOr(ca.Cert.Subject.Organization), Role: role, Name: name}, addrs, validity, now)
}

// Renew re-issues the certificate NAME.crt in dir with the same identity and
// addresses and a new key and lifetime. A sidecar using it picks it up
// without a restart (it reloads certificate files when they change).
func Renew(dir, name string, validity time.Duration, now time.Time) ([]string, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile(name)))
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w (issue a new one with `hasidecar tls issue`)", name, err)
	}
	old, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", name, err)
	}
	id, err := FromCert(old)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", name, err)
	}
	var addrs []string
	for _, ip := range old.IPAddresses {
		addrs = append(addrs, ip.String())
	}
	addrs = append(addrs, old.DNSNames...)
	return issueAndSave(ca, dir, id, addrs, validity, now)
}

func issueAndSave(ca *CA, dir string, id Identity, addrs []string, validity time.Duration, now time.Time) ([]string, error) {
	if validity == 0 {
		validity = DefaultLeafValidity
	}
	if now.IsZero() {
		now = time.Now()
	}
	leaf, err := ca.Issue(id, addrs, validity, now)
	if err != nil {
		return nil, err
	}
	if err := leaf.Save(dir, id.Name); err != nil {
		return nil, err
	}
	return []string{filepath.Join(dir, CertFile(id.Name)), filepath.Join(dir, KeyFile(id.Name))}, nil
}
