package keeper

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestDryRun: `agent --dry-run` answers with plan() itself, so it honours
// what the old hand-written table ignored: postgres.manual_rejoin and the
// clean stop of a switchover (no rewind).
func TestDryRun(t *testing.T) {
	pg1 := &pb.Node{Id: 1, Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Active: true, Priority: 100}
	formerPrimary := &pb.Node{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, UpstreamId: 1, Priority: 100}
	cluster := func(term uint64, nodes ...*pb.Node) *pb.ClusterState {
		return &pb.ClusterState{ClusterName: "c1", Term: term, SystemIdentifier: 42, Nodes: nodes}
	}
	cases := []struct {
		name         string
		st           *pb.ClusterState
		pg           *fakePG
		manualRejoin bool
		bootstrap    bool
		refused      bool
		want         []string // action kinds
		why          string
	}{
		{name: "a fresh node clones", st: cluster(3, pg1), pg: &fakePG{dir: pgctl.DataDirMissing, dirSet: true},
			want: []string{"clone", "configure", "start"}, why: `cloning from "pg1"`},
		{name: "a standby follows", st: cluster(3, pg1), pg: &fakePG{standbySignal: true},
			want: []string{"configure", "start"}, why: `starting as a standby of "pg1"`},
		{name: "a former primary rewinds", st: cluster(3, pg1, formerPrimary), pg: &fakePG{},
			want: []string{"rewind", "configure", "start"}, why: `rewinding from "pg1"`},
		{name: "a former primary with manual_rejoin waits", st: cluster(3, pg1, formerPrimary), pg: &fakePG{}, manualRejoin: true,
			why: "waiting for `hasidecar node rejoin`"},
		{name: "after a clean switchover stop: no rewind", st: cluster(3, pg1, formerPrimary),
			pg:   &fakePG{markerTerm: 2, markerLSN: 777, cdState: "shut down", checkpoint: 777},
			want: []string{"configure", "start"}, why: "no rewind needed"},
		{name: "a switchover marker of another term: rewind", st: cluster(4, pg1, formerPrimary),
			pg:   &fakePG{markerTerm: 2, markerLSN: 777, cdState: "shut down", checkpoint: 777},
			want: []string{"rewind", "configure", "start"}},
		{name: "another cluster's data directory is refused", st: cluster(3, pg1), pg: &fakePG{sysID: 7}, refused: true, why: "belongs to another cluster"},
		{name: "not a Postgres directory is refused", st: cluster(3, pg1), pg: &fakePG{dir: pgctl.DataDirNotPostgres, dirSet: true}, refused: true},
		{name: "the primary starts", st: cluster(3, &pb.Node{Id: 2, Name: "pg2", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Active: true}),
			pg: &fakePG{}, want: []string{"configure", "start"}, why: "starting as primary"},
		{name: "nobody answered, bootstrap: claim", pg: &fakePG{dir: pgctl.DataDirMissing, dirSet: true}, bootstrap: true,
			want: []string{"claim-primary"}},
		{name: "nobody answered, no bootstrap: wait", pg: &fakePG{dir: pgctl.DataDirMissing, dirSet: true}, why: "waiting for a primary"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "pg2")
			cfg.Postgres.ManualRejoin, cfg.Bootstrap = tc.manualRejoin, tc.bootstrap
			tc.pg.exited = make(chan struct{})
			p, err := DryRun(context.Background(), cfg, tc.pg, tc.st, clock.NewManual(time.Unix(1_700_000_000, 0)))
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, a := range p.Actions {
				kinds = append(kinds, a.Kind)
			}
			if p.Refused != tc.refused || strings.Join(kinds, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("DryRun: refused %v, actions %v (%s); want refused %v, actions %v", p.Refused, kinds, p.Why, tc.refused, tc.want)
			}
			if !strings.Contains(p.Why, tc.why) {
				t.Fatalf("why %q lacks %q", p.Why, tc.why)
			}
			if got := tc.pg.stops; len(got) != 0 || tc.pg.running {
				t.Fatalf("the dry run touched Postgres: stops %v running %v", got, tc.pg.running)
			}
		})
	}
}
