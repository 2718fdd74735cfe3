package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// matrixNow is the CLI's clock in these tests.
var matrixNow = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

// fxMembers: three data nodes and a witness, listed out of id order as the
// server may.
func fxMembers() []*pb.Node {
	return []*pb.Node{
		{Id: 4, Name: "witness", Kind: fxWitness, Role: fxWitnessRole, Active: true, Voter: true},
		{Id: 1, Name: "node1", Kind: fxData, Role: fxPrimaryRole, Active: true, Voter: true},
		{Id: 2, Name: "node2", Kind: fxData, Role: fxStandbyRole, Active: true, Voter: true},
		{Id: 3, Name: "node3", Kind: fxData, Role: fxStandbyRole, Active: true, Voter: true},
	}
}

type fxPeer struct {
	sidecar, postgres bool
}

// fxReport is node id's report taken age before matrixNow. A witness has
// no Postgres; a peer probe of a witness reports postgres_ok false.
func fxReport(id uint32, age time.Duration, pgRunning bool, peers map[uint32]fxPeer) *pb.NodeReport {
	r := &pb.NodeReport{NodeId: id, AtUnixMs: matrixNow.Add(-age).UnixMilli(), RaftState: "Follower"}
	if id != 4 {
		r.Postgres = &pb.PostgresStatus{Running: pgRunning}
	}
	for pid := uint32(1); pid <= 4; pid++ {
		p, ok := peers[pid]
		if !ok {
			continue
		}
		pr := &pb.PeerReachability{NodeId: pid, SidecarOk: p.sidecar, PostgresOk: p.postgres && pid != 4}
		if !p.sidecar {
			pr.Error = "sidecar: rpc error: code = Unavailable desc = connection refused"
		}
		if !p.postgres && pid != 4 {
			pr.Error = strings.TrimPrefix(pr.Error+"; postgres: dial tcp: connection refused", "; ")
		}
		r.Peers = append(r.Peers, pr)
	}
	return r
}

// fxPeersAll returns every peer but self as seen, with exceptions.
func fxPeersAll(self uint32, except map[uint32]fxPeer) map[uint32]fxPeer {
	m := map[uint32]fxPeer{}
	for id := uint32(1); id <= 4; id++ {
		if id == self {
			continue
		}
		m[id] = fxPeer{true, true}
		if e, ok := except[id]; ok {
			m[id] = e
		}
	}
	return m
}

func matrixSymbols(m matrix) []string {
	var rows []string
	n := len(m.Nodes)
	for i := 0; i < n; i++ {
		var b strings.Builder
		for j := 0; j < n; j++ {
			b.WriteString(m.Cells[i*n+j].symbol())
		}
		rows = append(rows, b.String())
	}
	return rows
}

type matrixCase struct {
	name  string
	resp  *pb.MatrixResponse
	want  []string // symbol rows, observers and observed in id order 1..4
	cross []string // "name:status:seen_by:unknown"
}

func matrixCases() []matrixCase {
	down := fxPeer{false, false}
	pgDown := fxPeer{true, false}
	sidecarDown := fxPeer{false, true}
	return []matrixCase{
		{
			name: "all_reachable",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, time.Second, true, fxPeersAll(1, nil)),
				fxReport(2, 2*time.Second, true, fxPeersAll(2, nil)),
				fxReport(3, 5*time.Second, true, fxPeersAll(3, nil)),
				fxReport(4, 0, false, fxPeersAll(4, nil)),
			}},
			want:  []string{"****", "****", "****", "****"},
			cross: []string{"node1:reachable:4:0", "node2:reachable:4:0", "node3:reachable:4:0", "witness:reachable:4:0"},
		},
		{
			name: "sidecar_down",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, time.Second, true, fxPeersAll(1, map[uint32]fxPeer{3: down})),
				fxReport(2, time.Second, true, fxPeersAll(2, map[uint32]fxPeer{3: down})),
				fxReport(4, time.Second, false, fxPeersAll(4, map[uint32]fxPeer{3: down})),
			}},
			want:  []string{"**x*", "**x*", "????", "**x*"},
			cross: []string{"node1:reachable:3:1", "node2:reachable:3:1", "node3:unreachable:0:1", "witness:reachable:3:1"},
		},
		{
			name: "postgres_down_sidecar_up",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, time.Second, true, fxPeersAll(1, map[uint32]fxPeer{2: pgDown})),
				fxReport(2, time.Second, false, fxPeersAll(2, nil)),
				fxReport(3, time.Second, true, fxPeersAll(3, map[uint32]fxPeer{2: pgDown})),
				fxReport(4, time.Second, false, fxPeersAll(4, map[uint32]fxPeer{2: pgDown})),
			}},
			want:  []string{"*p**", "*p**", "*p**", "*p**"},
			cross: []string{"node1:reachable:4:0", "node2:unreachable:0:0", "node3:reachable:4:0", "witness:reachable:4:0"},
		},
		{
			name: "sidecar_down_postgres_up",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, time.Second, true, fxPeersAll(1, map[uint32]fxPeer{3: sidecarDown})),
				fxReport(2, time.Second, true, fxPeersAll(2, map[uint32]fxPeer{3: sidecarDown})),
				fxReport(4, time.Second, false, fxPeersAll(4, map[uint32]fxPeer{3: sidecarDown})),
			}},
			want:  []string{"**s*", "**s*", "????", "**s*"},
			cross: []string{"node1:reachable:3:1", "node2:reachable:3:1", "node3:unreachable:0:1", "witness:reachable:3:1"},
		},
		{
			name: "witness_down",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, time.Second, true, fxPeersAll(1, map[uint32]fxPeer{4: down})),
				fxReport(2, time.Second, true, fxPeersAll(2, map[uint32]fxPeer{4: down})),
				fxReport(3, time.Second, true, fxPeersAll(3, map[uint32]fxPeer{4: down})),
			}},
			want:  []string{"***x", "***x", "***x", "????"},
			cross: []string{"node1:reachable:3:1", "node2:reachable:3:1", "node3:reachable:3:1", "witness:unreachable:0:1"},
		},
		{
			// 30 s is already stale; 29.999 s is still fresh.
			name: "stale_report",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, 29999*time.Millisecond, true, fxPeersAll(1, nil)),
				fxReport(2, 30*time.Second, true, fxPeersAll(2, nil)),
				fxReport(3, 10*time.Minute, true, fxPeersAll(3, nil)),
				fxReport(4, time.Second, false, fxPeersAll(4, nil)),
			}},
			want:  []string{"****", "????", "????", "****"},
			cross: []string{"node1:reachable:2:2", "node2:reachable:2:2", "node3:reachable:2:2", "witness:reachable:2:2"},
		},
		{
			// A node just joined: nobody has probed it yet, and it has not reported.
			name: "new_node_not_probed",
			resp: &pb.MatrixResponse{Nodes: fxMembers(), Reports: []*pb.NodeReport{
				fxReport(1, time.Second, true, fxPeersAll(1, nil)),
				fxReport(2, time.Second, true, fxPeersAll(2, nil)),
				fxReport(4, time.Second, false, map[uint32]fxPeer{1: {true, true}, 2: {true, true}}),
			}},
			want:  []string{"****", "****", "????", "**?*"},
			cross: []string{"node1:reachable:3:1", "node2:reachable:3:1", "node3:reachable:2:2", "witness:reachable:3:1"},
		},
		{
			name:  "no_reports",
			resp:  &pb.MatrixResponse{Nodes: fxMembers()},
			want:  []string{"????", "????", "????", "????"},
			cross: []string{"node1:unknown:0:4", "node2:unknown:0:4", "node3:unknown:0:4", "witness:unknown:0:4"},
		},
	}
}

func TestBuildMatrix(t *testing.T) {
	for _, tc := range matrixCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := buildMatrix(tc.resp, matrixNow)
			var ids []uint32
			for _, n := range m.Nodes {
				ids = append(ids, n.ID)
			}
			if !slices.Equal(ids, []uint32{1, 2, 3, 4}) {
				t.Fatalf("nodes in order %v, want 1 2 3 4", ids)
			}
			if len(m.Cells) != 16 {
				t.Fatalf("%d cells, want 16", len(m.Cells))
			}
			for i, c := range m.Cells {
				if c.Observer != ids[i/4] || c.Observed != ids[i%4] {
					t.Errorf("cell %d is %d->%d, want %d->%d", i, c.Observer, c.Observed, ids[i/4], ids[i%4])
				}
				if c.Observed == 4 && c.PostgresOK != nil {
					t.Errorf("cell %d->4: a witness has no Postgres, postgres_ok = %v", c.Observer, *c.PostgresOK)
				}
			}
			if got := matrixSymbols(m); !slices.Equal(got, tc.want) {
				t.Errorf("matrix\n got  %q\n want %q", got, tc.want)
			}
			var cross []string
			for _, c := range m.crosscheck() {
				cross = append(cross, strings.Join([]string{c.Name, c.Status, strconv.Itoa(c.SeenBy), strconv.Itoa(c.Unknown)}, ":"))
			}
			if !slices.Equal(cross, tc.cross) {
				t.Errorf("crosscheck\n got  %q\n want %q", cross, tc.cross)
			}

			var buf bytes.Buffer
			renderMatrix(&buf, m)
			buf.WriteString("\n")
			renderCrosscheck(&buf, m)
			golden(t, "matrix_"+tc.name+".golden", buf.Bytes())
		})
	}
}

func TestMatrixJSON(t *testing.T) {
	m := buildMatrix(matrixCases()[1].resp, matrixNow) // sidecar_down
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix_sidecar_down.json.golden", append(b, '\n'))
}

func TestMatrixSymbol(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name string
		cell matrixCell
		want string
	}{
		{"unknown", matrixCell{}, "?"},
		{"unknown ignores the rest", matrixCell{SidecarOK: true, PostgresOK: &yes}, "?"},
		{"all up", matrixCell{Known: true, SidecarOK: true, PostgresOK: &yes}, "*"},
		{"witness up", matrixCell{Known: true, SidecarOK: true}, "*"},
		{"all down", matrixCell{Known: true, PostgresOK: &no}, "x"},
		{"witness down", matrixCell{Known: true}, "x"},
		{"postgres down", matrixCell{Known: true, SidecarOK: true, PostgresOK: &no}, "p"},
		{"sidecar down, postgres up", matrixCell{Known: true, PostgresOK: &yes}, "s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cell.symbol(); got != tc.want {
				t.Errorf("symbol() = %q, want %q", got, tc.want)
			}
		})
	}
}
