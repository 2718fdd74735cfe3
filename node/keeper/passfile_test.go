package keeper

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgpassfile"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func dataRow(id uint32, name, conninfo string) *pb.Node {
	return &pb.Node{Id: id, Name: name, Kind: pb.NodeKind_NODE_KIND_DATA, Conninfo: conninfo}
}

func TestPassfileEntries(t *testing.T) {
	secrets := []passSecret{{"replicator", "rpw"}, {"postgres", "spw"}}
	self := pgEndpoint{"10.0.0.1", "5432"}
	pg1 := dataRow(1, "pg1", "host=10.0.0.1 port=5432 user=replicator application_name=pg1")
	pg2 := dataRow(2, "pg2", "host=10.0.0.2 port=5433 user=replicator application_name=pg2")
	pg3 := dataRow(3, "pg3", "host=pg3.example user=replicator application_name=pg3") // default port
	both := func(host, port string) []pgctl.PassEntry {
		return []pgctl.PassEntry{
			{Host: host, Port: port, Database: "*", User: "replicator", Password: "rpw"},
			{Host: host, Port: port, Database: "*", User: "postgres", Password: "spw"},
		}
	}
	cat := func(groups ...[]pgctl.PassEntry) []pgctl.PassEntry {
		var out []pgctl.PassEntry
		for _, g := range groups {
			out = append(out, g...)
		}
		return out
	}
	cases := []struct {
		name    string
		nodes   []*pb.Node
		self    pgEndpoint
		secrets []passSecret
		want    []pgctl.PassEntry
	}{
		{"before registration: this node only", nil, self, secrets, both("10.0.0.1", "5432")},
		{"three members, sorted by host", []*pb.Node{pg3, pg2, pg1}, self, secrets,
			cat(both("10.0.0.1", "5432"), both("10.0.0.2", "5433"), both("pg3.example", "5432"))},
		{"a witness has no entry", []*pb.Node{pg1, {Id: 4, Name: "w1", Kind: pb.NodeKind_NODE_KIND_WITNESS, Conninfo: "host=10.0.0.9 port=5432"}}, self, secrets,
			both("10.0.0.1", "5432")},
		{"a removed node's entry is gone", []*pb.Node{pg1, pg3}, self, secrets,
			cat(both("10.0.0.1", "5432"), both("pg3.example", "5432"))},
		{"duplicates collapse", []*pb.Node{pg1, pg2, dataRow(5, "pg2-again", "host=10.0.0.2 port=5433 user=x")}, self, secrets,
			cat(both("10.0.0.1", "5432"), both("10.0.0.2", "5433"))},
		{"same host, other port: two entries", []*pb.Node{pg1, dataRow(6, "pg6", "host=10.0.0.1 port=5434")}, self, secrets,
			cat(both("10.0.0.1", "5432"), both("10.0.0.1", "5434"))},
		{"IPv6 host as the connection string names it", []*pb.Node{dataRow(7, "pg7", "host=fd00::7 port=5432")}, self, secrets,
			cat(both("10.0.0.1", "5432"), both("fd00::7", "5432"))},
		{"wildcards, sockets and empty conninfo give no entry", []*pb.Node{
			dataRow(8, "star", "host=* port=5432"), dataRow(9, "sock", "host=/var/run/postgresql port=5432"),
			dataRow(10, "empty", ""), dataRow(11, "starport", "host=10.0.0.11 port=*")}, self, secrets,
			// port=* is not a number: the row is reached on the default port.
			cat(both("10.0.0.1", "5432"), both("10.0.0.11", "5432"))},
		{"a wildcard self is skipped", []*pb.Node{pg2}, pgEndpoint{"*", "*"}, secrets, both("10.0.0.2", "5433")},
		{"one secret only", []*pb.Node{pg1}, self, secrets[:1], both("10.0.0.1", "5432")[:1]},
		{"no secrets: no entries", []*pb.Node{pg1, pg2}, self, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := passfileEntries(&pb.ClusterState{Nodes: tc.nodes}, tc.self, tc.secrets)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("entries:\n got %+v\nwant %+v", got, tc.want)
			}
			for _, e := range got {
				if e.Host == "*" || e.Port == "*" || e.Host == "" || e.Port == "" {
					t.Errorf("entry with a wildcard or empty host or port: %+v", e)
				}
			}
			text, err := pgctl.RenderPassfile(got)
			if err != nil {
				t.Fatal(err)
			}
			checkNoWildcardHost(t, text, len(got))
		})
	}
}

// TestRefreshPassfile: the file follows the nodes table (a member that
// joins gets its entries, a removed one loses them), is 0600, and is only
// rewritten when its content changes.
func TestRefreshPassfile(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	f := fakelog.New(clk)
	apply := func(cmd *pb.Command) {
		t.Helper()
		if res := f.Apply(cmd); res.Err != nil {
			t.Fatalf("apply %v: %v", cmd, res.Err)
		}
	}
	register := func(name, conninfo string) {
		apply(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: name,
			Kind: pb.NodeKind_NODE_KIND_DATA, Conninfo: conninfo, RaftAddress: name + ":7000", GrpcAddress: name + ":7001"}}})
	}
	apply(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1"}}})
	register("pg1", "host=10.0.0.1 port=5432 user=replicator application_name=pg1")

	pc := &config.PostgresConfig{Host: "10.0.0.1", Port: 5432, Superuser: "postgres", ReplicationUser: "replicator"}
	a := newTestKeeper(t, &config.Config{Name: "pg1", Postgres: pc}, clk, f, newFakePG())
	a.passfile, a.passSecrets = filepath.Join(dir, "pgpass"), []passSecret{{"replicator", "rpw"}, {"postgres", "spw"}}
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(a.passfile)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	refresh := func() {
		t.Helper()
		if err := a.refreshPassfile(); err != nil {
			t.Fatal(err)
		}
	}

	refresh()
	if got, want := read(), "10.0.0.1:5432:*:replicator:rpw\n10.0.0.1:5432:*:postgres:spw\n"; got != want {
		t.Fatalf("first write:\n%s\nwant\n%s", got, want)
	}
	if fi, err := os.Stat(a.passfile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("passfile mode: %v %v", fi.Mode(), err)
	}

	// Same membership: not rewritten (the marker stays).
	if err := os.WriteFile(a.passfile, []byte("marker\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apply(&pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: 1, Type: "fence"}}})
	refresh()
	if got := read(); got != "marker\n" {
		t.Fatalf("rewritten without a membership change:\n%s", got)
	}

	// A member joins: rewritten with its entries.
	register("pg2", "host=10.0.0.2 port=5433 user=replicator application_name=pg2")
	refresh()
	if got := read(); !strings.Contains(got, "10.0.0.2:5433:*:replicator:rpw\n") || !strings.Contains(got, "10.0.0.1:5432:") {
		t.Fatalf("after pg2 joined:\n%s", got)
	}

	// It is removed: its entries are gone.
	apply(&pb.Command{Cmd: &pb.Command_RemoveNode{RemoveNode: &pb.RemoveNode{NodeId: 2}}})
	refresh()
	if got := read(); strings.Contains(got, "10.0.0.2") || !strings.Contains(got, "10.0.0.1:5432:") {
		t.Fatalf("after pg2 was removed:\n%s", got)
	}
	checkNoWildcardHost(t, read(), 2)
}

// checkNoWildcardHost parses a rendered passfile as libpq's format and
// fails on an entry whose host or port is "*".
func checkNoWildcardHost(t *testing.T, text string, wantEntries int) {
	t.Helper()
	pf, err := pgpassfile.ParsePassfile(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.Entries) != wantEntries {
		t.Errorf("%d entries parsed, want %d:\n%s", len(pf.Entries), wantEntries, text)
	}
	for _, e := range pf.Entries {
		if e.Hostname == "*" || e.Port == "*" {
			t.Errorf("entry with a wildcard host or port: %+v", e)
		}
	}
}
