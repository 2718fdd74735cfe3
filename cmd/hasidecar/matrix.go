package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// newClusterMatrixCmd builds `cluster matrix` (every sidecar's view of every
// node) or `cluster crosscheck` (one verdict per node from all views). Views
// travel over gRPC: no SSH between hosts.
func newClusterMatrixCmd(crosscheck bool) *cobra.Command {
	var t target
	use, short := "matrix", "Every sidecar's view of every other node's sidecar and Postgres"
	if crosscheck {
		use, short = "crosscheck", "One reachability verdict per node, from every sidecar's view"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return t.do(cmd, func(ctx context.Context, c *client) error {
				resp, err := c.cluster.Matrix(ctx, &pb.MatrixRequest{})
				if err != nil {
					return err
				}
				m := buildMatrix(resp, time.Now())
				if crosscheck {
					if t.jsonOut {
						return printJSON(m.crosscheck())
					}
					renderCrosscheck(os.Stdout, m)
					return nil
				}
				if t.jsonOut {
					return printJSON(m)
				}
				renderMatrix(os.Stdout, m)
				return nil
			})
		},
	}
	t.flags(cmd, true)
	return cmd
}

type matrixNode struct {
	ID   uint32 `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"`
}

type matrixCell struct {
	Observer   uint32 `json:"observer"`
	Observed   uint32 `json:"observed"`
	Known      bool   `json:"known"`
	SidecarOK  bool   `json:"sidecar_ok"`
	PostgresOK *bool  `json:"postgres_ok"`
	Error      string `json:"error,omitempty"`
}

type matrix struct {
	Nodes []matrixNode `json:"nodes"`
	Cells []matrixCell `json:"matrix"`
}

// buildMatrix: a row per observer; a sidecar without a fresh report (older
// than 30 s) has a row of unknowns, and is itself seen by the others.
func buildMatrix(resp *pb.MatrixResponse, now time.Time) matrix {
	m := matrix{Nodes: []matrixNode{}, Cells: []matrixCell{}}
	isData := map[uint32]bool{}
	for _, n := range resp.Nodes {
		kind := "data"
		if n.Kind == pb.NodeKind_NODE_KIND_WITNESS {
			kind = "witness"
		}
		isData[n.Id] = n.Kind == pb.NodeKind_NODE_KIND_DATA
		m.Nodes = append(m.Nodes, matrixNode{ID: n.Id, Name: n.Name, Kind: kind})
	}
	sort.Slice(m.Nodes, func(i, j int) bool { return m.Nodes[i].ID < m.Nodes[j].ID })
	reports := map[uint32]*pb.NodeReport{}
	for _, r := range resp.Reports {
		if now.Sub(time.UnixMilli(r.AtUnixMs)) < 30*time.Second {
			reports[r.NodeId] = r
		}
	}
	for _, obs := range m.Nodes {
		r := reports[obs.ID]
		seen := map[uint32]*pb.PeerReachability{}
		if r != nil {
			for _, p := range r.Peers {
				seen[p.NodeId] = p
			}
		}
		for _, tgt := range m.Nodes {
			cell := matrixCell{Observer: obs.ID, Observed: tgt.ID}
			switch {
			case r == nil:
			case obs.ID == tgt.ID:
				cell.Known, cell.SidecarOK = true, true
				if isData[tgt.ID] {
					ok := r.Postgres.GetRunning()
					cell.PostgresOK = &ok
				}
			case seen[tgt.ID] != nil:
				p := seen[tgt.ID]
				cell.Known, cell.SidecarOK, cell.Error = true, p.SidecarOk, p.Error
				if isData[tgt.ID] {
					ok := p.PostgresOk
					cell.PostgresOK = &ok
				}
			}
			m.Cells = append(m.Cells, cell)
		}
	}
	return m
}

// symbol: '*' reachable, 'x' unreachable, 'p' sidecar up but Postgres
// down, '?' unknown (as in repmgr's matrix, plus 'p').
func (c matrixCell) symbol() string {
	switch {
	case !c.Known:
		return "?"
	case !c.SidecarOK && (c.PostgresOK == nil || !*c.PostgresOK):
		return "x"
	case c.PostgresOK != nil && !*c.PostgresOK:
		return "p"
	case !c.SidecarOK:
		return "s"
	}
	return "*"
}

func renderMatrix(w io.Writer, m matrix) {
	header := []string{"Name", "ID"}
	for _, n := range m.Nodes {
		header = append(header, fmt.Sprint(n.ID))
	}
	var rows [][]string
	for i, obs := range m.Nodes {
		row := []string{obs.Name, fmt.Sprint(obs.ID)}
		for j := range m.Nodes {
			row = append(row, m.Cells[i*len(m.Nodes)+j].symbol())
		}
		rows = append(rows, row)
	}
	table(w, header, rows)
	fmt.Fprintln(w, "\n* reachable   x unreachable   p sidecar up, Postgres down   s Postgres up, sidecar down   ? unknown (no report from that sidecar)")
}

type crossJSON struct {
	ID      uint32 `json:"id"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	SeenBy  int    `json:"seen_by"`
	Unknown int    `json:"unknown"`
}

// crosscheck: a node is reachable when at least one observer reaches it.
func (m matrix) crosscheck() []crossJSON {
	out := []crossJSON{}
	for j, tgt := range m.Nodes {
		c := crossJSON{ID: tgt.ID, Name: tgt.Name, Status: "unreachable"}
		for i := range m.Nodes {
			cell := m.Cells[i*len(m.Nodes)+j]
			if !cell.Known {
				c.Unknown++
				continue
			}
			if cell.symbol() == "*" {
				c.SeenBy++
			}
		}
		switch {
		case c.SeenBy > 0:
			c.Status = "reachable"
		case c.Unknown == len(m.Nodes):
			c.Status = "unknown"
		}
		out = append(out, c)
	}
	return out
}

func renderCrosscheck(w io.Writer, m matrix) {
	var rows [][]string
	for _, c := range m.crosscheck() {
		rows = append(rows, []string{fmt.Sprint(c.ID), c.Name, c.Status, fmt.Sprintf("%d of %d", c.SeenBy, len(m.Nodes)-c.Unknown)})
	}
	table(w, []string{"ID", "Name", "Status", "Reached by"}, rows)
}

type historyJSON struct {
	NodeID     uint32 `json:"node_id"`
	Name       string `json:"name"`
	Timestamp  string `json:"timestamp"`
	Running    bool   `json:"running"`
	InRecovery bool   `json:"in_recovery"`
	Timeline   uint32 `json:"timeline"`
	LSN        string `json:"lsn"`
	LagMs      int64  `json:"replay_lag_ms"`
	Conns      int32  `json:"connections"`
	at         int64
}

func renderHistory(samples []*pb.NodeReport, asJSON bool) error {
	out := []historyJSON{}
	for _, s := range samples {
		pg := s.GetPostgres()
		lsn := pg.GetCurrentLsn()
		if pg.GetInRecovery() {
			lsn = pg.GetReplayLsn()
		}
		out = append(out, historyJSON{NodeID: s.NodeId, Name: s.Name, Timestamp: timeJSON(s.AtUnixMs), at: s.AtUnixMs,
			Running: pg.GetRunning(), InRecovery: pg.GetInRecovery(), Timeline: pg.GetTimeline(), LSN: lsnText(lsn), LagMs: pg.GetReplayLagMs(), Conns: pg.GetConnections()})
	}
	if asJSON {
		return printJSON(out)
	}
	var rows [][]string
	for _, h := range out {
		role := "-"
		switch {
		case h.Running && h.InRecovery:
			role = "standby"
		case h.Running:
			role = "primary"
		}
		rows = append(rows, []string{timeText(h.at), fmt.Sprint(h.NodeID), h.Name, role, fmt.Sprint(h.Timeline), h.LSN, fmt.Sprint(h.LagMs), fmt.Sprint(h.Conns)})
	}
	table(os.Stdout, []string{"Timestamp", "ID", "Name", "Postgres", "Timeline", "LSN", "Lag ms", "Connections"}, rows)
	if len(rows) == 0 {
		fmt.Println(strings.TrimSpace("(no samples)"))
	}
	return nil
}
