package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
)

// TestMutualTLS: with tls configured, the Raft transport and gRPC run over
// mutual TLS: the group forms, the CLI talks to it with the node's
// certificate, and a client without one is turned away.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := makeCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	certDER, key := makeLeaf(t, ca, caKey)
	writePEM(t, filepath.Join(dir, "node.pem"), "CERTIFICATE", certDER)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "node-key.pem"), "EC PRIVATE KEY", keyDER)
	c := witnessCluster(t, func(cfg *config.Config) {
		cfg.TLS = config.TLSConfig{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "node.pem"), KeyFile: filepath.Join(dir, "node-key.pem")}
	})
	c.start()
	w1 := c.node("w1")
	eventually(t, 30*time.Second, "a TLS group of three", func() string {
		out, errOut, code := c.cli("cluster", "show", "--json", "-c", w1.ConfigPath)
		if code != 0 {
			return errOut
		}
		if strings.Count(out, `"kind": "witness"`) != 3 || strings.Contains(out, `"raft_leader": ""`) {
			return out
		}
		return ""
	})
	_, errOut, code := c.cli("cluster", "show", "--addr", w1.GRPCAddr(), "--rpc-timeout", "3s")
	if code != 1 {
		t.Fatalf("a client without a certificate got an answer (exit %d)", code)
	}
	t.Logf("plain client refused: %s", strings.TrimSpace(errOut))
}

func makeCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hasidecar test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

func makeLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
