package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/statelock"
	"github.com/hasidecar/hasidecar/node/keeper"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// DryRun says what the sidecar would do on start (like repmgr standby clone
// --dry-run): initdb, adopt, clone from X, follow X, or refuse. It reads the
// data directory and asks the cluster; it changes nothing.
func DryRun(ctx context.Context, cfg *config.Config) ([]string, error) {
	out := []string{fmt.Sprintf("config: OK (%s node %q of cluster %q)", cfg.Kind, cfg.Name, cfg.Cluster)}
	_, err := os.Stat(filepath.Join(cfg.StateDir, "raft", "raft.db"))
	hasState := err == nil
	if hasState {
		out = append(out, "raft state: found in "+cfg.StateDir+": the node resumes its membership")
	} else if cfg.Bootstrap {
		out = append(out, "raft state: none; bootstrap is set: the node starts a new cluster unless a member in join answers")
	} else {
		out = append(out, fmt.Sprintf("raft state: none; the node joins through %v", cfg.Join))
	}
	view, via := askCluster(ctx, cfg)
	if view != nil {
		primary := "none yet"
		for _, n := range view.Nodes {
			if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
				primary = n.Name
			}
		}
		out = append(out, fmt.Sprintf("cluster: %q reached via %s, term %d, primary %s", view.Cluster, via, view.Term, primary))
		if view.Cluster != cfg.Cluster {
			return out, fmt.Errorf("the cluster at %s is %q, this node's config says %q: the join would be refused", via, view.Cluster, cfg.Cluster)
		}
	} else {
		out = append(out, "cluster: no member answered")
	}
	if cfg.IsWitness() {
		return append(out, "would: run as a witness (a Raft voter, no Postgres)"), nil
	}
	pgc, err := newPGPostgres(cfg, hclog.NewNullLogger())
	if err != nil {
		return out, err
	}
	state, err := pgc.InspectDataDir(ctx)
	if err != nil {
		return out, fmt.Errorf("postgres: %w", err)
	}
	switch state {
	case pgctl.DataDirNotPostgres:
		out = append(out, "data directory "+cfg.Postgres.DataDir+": holds files but is not a Postgres data directory")
	case pgctl.DataDirValid:
		cd, err := pgc.ControlData(ctx)
		if err != nil {
			return out, fmt.Errorf("postgres: %w", err)
		}
		out = append(out, fmt.Sprintf("data directory %s: Postgres, system identifier %d, timeline %d, state %q, standby.signal %t", cfg.Postgres.DataDir, cd.SystemIdentifier, cd.TimelineID, cd.State, pgc.IsStandbySignal()))
	default:
		out = append(out, "data directory "+cfg.Postgres.DataDir+": empty or missing")
	}
	// The decision is the agent's own: plan() for what was observed. When
	// an agent runs with this state_dir, the running postmaster is its own,
	// not a foreign one.
	var pg keeper.Postgres = pgc
	if pid := statelock.Holder(cfg.StateDir); pid != 0 {
		out = append(out, fmt.Sprintf("agent: running (pid %d) with this state_dir; its Postgres is the one running", pid))
		pg = ownedPostgres{pgc}
	}
	p, err := keeper.DryRun(ctx, cfg, pg, viewState(view), clock.Real{})
	if err != nil {
		return out, err
	}
	if p.Refused {
		return out, fmt.Errorf("would refuse to start: %s", p.Why)
	}
	out = append(out, describePlan(p, state == pgctl.DataDirValid, fsm.SlotName(cfg.Name)))
	kinds := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		kinds[i] = a.Kind
	}
	line := "plan: " + p.Why
	if len(kinds) > 0 {
		line += " (" + strings.Join(kinds, ", ") + ")"
	}
	return append(out, line), nil
}

// describePlan says in a user's words what the plan's first actions do.
func describePlan(p keeper.DryRunPlan, dirValid bool, slot string) string {
	find := func(kind string) (keeper.PlannedAction, bool) {
		for _, a := range p.Actions {
			if a.Kind == kind {
				return a, true
			}
		}
		return keeper.PlannedAction{}, false
	}
	if a, ok := find("clone"); ok {
		return fmt.Sprintf("would: clone from %s (pg_basebackup through slot %s), start as its standby and register (standby_register)", a.Upstream, slot)
	}
	if a, ok := find("rewind"); ok {
		return fmt.Sprintf("would: rewind from %s (pg_rewind; a fresh clone if that cannot work) and follow it as a standby", a.Upstream)
	}
	if _, ok := find("initdb"); ok {
		return "would: initdb a new cluster and start it as the bootstrap primary"
	}
	if _, ok := find("claim-primary"); ok {
		if dirValid {
			return "would: adopt the existing data directory as the bootstrap primary"
		}
		return "would: initdb a new cluster and start it as the bootstrap primary"
	}
	if a, ok := find("start"); ok {
		switch {
		case a.AsStandby && a.Upstream != "":
			return fmt.Sprintf("would: follow %s as a standby (write primary_conninfo, start in recovery)", a.Upstream)
		case a.AsStandby:
			return "would: start in recovery, then promote"
		}
		return "would: start as the primary once its lease is renewed"
	}
	if len(p.Actions) == 0 {
		return "would: wait: " + p.Why
	}
	return "would: " + p.Why
}

// viewState is the cluster state as far as a ShowResponse tells it (nil
// when no member answered).
func viewState(v *pb.ShowResponse) *pb.ClusterState {
	if v == nil {
		return nil
	}
	st := &pb.ClusterState{
		ClusterName: v.Cluster, Term: v.Term, SystemIdentifier: v.SystemIdentifier, Lease: v.Lease, Switchover: v.Switchover,
		Settings: &pb.Settings{Paused: v.Paused, FailoverMode: v.FailoverMode, Synchronous: v.Synchronous},
	}
	for _, n := range v.Nodes {
		st.Nodes = append(st.Nodes, &pb.Node{
			Id: n.Id, Name: n.Name, Kind: n.Kind, Role: n.Role, UpstreamId: n.UpstreamId, Location: n.Location,
			Priority: n.Priority, Conninfo: n.Conninfo, Active: n.Active, Tags: n.Tags, GrpcAddress: n.GrpcAddress,
		})
		if n.SyncStandby {
			st.SyncStandbys = append(st.SyncStandbys, n.Id)
		}
	}
	return st
}

// askCluster asks the sidecar at this config's own address (if it runs) and
// each join address for cluster show.
func askCluster(ctx context.Context, cfg *config.Config) (*pb.ShowResponse, string) {
	opts, err := DialOptions(cfg.TLS)
	if err != nil {
		return nil, ""
	}
	// A member that has not caught up yet (restarted a moment ago, no
	// leader known) answers with an empty cluster: ask the next one then.
	var first *pb.ShowResponse
	firstAddr := ""
	for _, addr := range append([]string{cfg.GRPCAdvertise()}, cfg.Join...) {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := pb.NewClusterServiceClient(conn).Show(cctx, &pb.ShowRequest{})
		cancel()
		_ = conn.Close()
		if err != nil {
			continue
		}
		if resp.Cluster != "" {
			return resp, addr
		}
		if first == nil {
			first, firstAddr = resp, addr
		}
	}
	return first, firstAddr
}

// ownedPostgres is the data directory's Postgres as the running agent's
// dry run sees it: the postmaster there is that agent's.
type ownedPostgres struct{ *pgPostgres }

func (ownedPostgres) ForeignPostmaster() int { return 0 }
