package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture holds files the configurations in tests point at: a directory of
// fake Postgres executables, password files and TLS files (the node's, an
// operator's for ctl, and a key others may read). Test YAML names them with
// placeholders ($BIN, $SUPERPASS, ...) that expand replaces.
type fixture struct {
	dir     string
	repl    *strings.Replacer
	bin     string
	partBin string // has postgres and pg_ctl only
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, bin: filepath.Join(dir, "bin"), partBin: filepath.Join(dir, "partbin")}
	for _, d := range []string{f.bin, f.partBin, filepath.Join(dir, "tls")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range requiredBinaries {
		writeFile(t, filepath.Join(f.bin, b), "#!/bin/sh\nexit 0\n", 0o755)
	}
	writeFile(t, filepath.Join(f.partBin, "postgres"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(f.partBin, "pg_ctl"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(f.partBin, "initdb"), "not executable\n", 0o644)
	files := map[string]string{
		"$SUPERPASS": filepath.Join(dir, "superuser.pass"),
		"$REPLPASS":  filepath.Join(dir, "replication.pass"),
		"$CA":        filepath.Join(dir, "tls", "ca.crt"),
		"$CERT":      filepath.Join(dir, "tls", "node.crt"),
		"$KEY":       filepath.Join(dir, "tls", "node.key"),
		"$OPCERT":    filepath.Join(dir, "tls", "operator.crt"),
		"$OPKEY":     filepath.Join(dir, "tls", "operator.key"),
	}
	for _, p := range files {
		writeFile(t, p, "secret\n", 0o600)
	}
	// A key file group and others may read, which the validator refuses.
	files["$OPENKEY"] = filepath.Join(dir, "tls", "open.key")
	writeFile(t, files["$OPENKEY"], "secret\n", 0o644)
	f.repl = strings.NewReplacer(
		"$BIN", f.bin,
		"$PARTBIN", f.partBin,
		"$SUPERPASS", files["$SUPERPASS"],
		"$REPLPASS", files["$REPLPASS"],
		"$CA", files["$CA"],
		"$CERT", files["$CERT"],
		"$KEY", files["$KEY"],
		"$OPCERT", files["$OPCERT"],
		"$OPKEY", files["$OPKEY"],
		"$OPENKEY", files["$OPENKEY"],
		"$MISSING", filepath.Join(dir, "missing"),
		"$DIR", dir,
	)
	return f
}

func (f *fixture) expand(s string) string { return f.repl.Replace(s) }

// fullYAML returns testdata/full.yaml with its paths pointed at the fixture.
func (f *fixture) fullYAML(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(
		"/usr/lib/postgresql/15/bin", "$BIN",
		"/etc/hasidecar/superuser.pass", "$SUPERPASS",
		"/etc/hasidecar/replication.pass", "$REPLPASS",
		"/etc/hasidecar/tls/ca.crt", "$CA",
		"/etc/hasidecar/tls/node.crt", "$CERT",
		"/etc/hasidecar/tls/node.key", "$KEY",
		"/etc/hasidecar/tls/operator.crt", "$OPCERT",
		"/etc/hasidecar/tls/operator.key", "$OPKEY",
	).Replace(string(data))
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// tlsFiles is a one-line tls section naming the fixture's node certificate.
// Appended to a fixture that listens on addresses other than loopback, it
// satisfies the required mutual TLS without moving any line before it.
const tlsFiles = "tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}\n"

// withTLS returns yaml with tlsFiles appended as its last line.
func withTLS(yaml string) string { return yaml + tlsFiles }

// witnessYAML is a valid witness with mutual TLS (grpc and tls take a line
// each); lines after it start at line 10.
const witnessYAML = `cluster: main
name: w1
kind: witness
state_dir: /var/lib/hasidecar
bootstrap: true
raft:
  listen: 10.0.0.9:7000
grpc: {listen: 10.0.0.9:7001}
tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}
`

// bareWitnessYAML is witnessYAML without a tls section, for the tests of
// that section; lines after it start at line 10.
const bareWitnessYAML = `cluster: main
name: w1
kind: witness
state_dir: /var/lib/hasidecar
bootstrap: true
raft:
  listen: 10.0.0.9:7000
grpc:
  listen: 10.0.0.9:7001
`

// labWitnessYAML is a witness listening on loopback only, with no tls
// section; lines after it start at line 10.
const labWitnessYAML = `cluster: main
name: w1
kind: witness
state_dir: /var/lib/hasidecar
bootstrap: true
raft:
  listen: 127.0.0.1:7000
grpc:
  listen: 127.0.0.1:7001
`

// dataYAML is a valid data node with mutual TLS (grpc and tls take a line
// each); lines added with pg() continue the postgres section at line 14.
const dataYAML = `cluster: main
name: pg-1
state_dir: /var/lib/hasidecar
bootstrap: true
raft:
  listen: 10.0.0.1:7000
grpc: {listen: 10.0.0.1:7001}
tls: {ca_file: $CA, cert_file: $CERT, key_file: $KEY}
postgres:
  bin_dir: $BIN
  data_dir: /var/lib/postgresql/15/main
  superuser_password_file: $SUPERPASS
  replication_password_file: $REPLPASS
`

// witness returns witnessYAML with extra top-level lines (from line 10).
func witness(extra string) string { return witnessYAML + extra }

// bare returns bareWitnessYAML with extra top-level lines (from line 10).
func bare(extra string) string { return bareWitnessYAML + extra }

// lab returns labWitnessYAML with extra top-level lines (from line 10).
func lab(extra string) string { return labWitnessYAML + extra }

// pg returns dataYAML with extra lines in the postgres section (from line
// 14), indented for it.
func pg(extra string) string {
	var b strings.Builder
	b.WriteString(dataYAML)
	for _, l := range strings.Split(strings.TrimSuffix(extra, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
