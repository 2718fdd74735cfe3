package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
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
	ctl, err := pgctl.New(pgctl.Options{
		BinDir: cfg.Postgres.BinDir, DataDir: cfg.Postgres.DataDir, Port: cfg.Postgres.Port,
		ListenAddresses: cfg.Postgres.ListenAddresses, SocketDir: cfg.Postgres.SocketDir, OSUser: cfg.Postgres.OSUser,
		Superuser: cfg.Postgres.Superuser, LogFile: cfg.Postgres.LogFile, Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		return out, fmt.Errorf("postgres: %w", err)
	}
	state, err := ctl.InspectDataDir(ctx)
	if err != nil {
		return out, fmt.Errorf("postgres: %w", err)
	}
	var sysid uint64
	standby := false
	switch state {
	case pgctl.DataDirNotPostgres:
		out = append(out, "data directory "+cfg.Postgres.DataDir+": holds files but is not a Postgres data directory")
		return out, fmt.Errorf("would refuse to start: empty %s or point postgres.data_dir elsewhere (nothing is changed)", cfg.Postgres.DataDir)
	case pgctl.DataDirValid:
		cd, err := ctl.ControlData(ctx)
		if err != nil {
			return out, fmt.Errorf("postgres: %w", err)
		}
		sysid = cd.SystemIdentifier
		standby = ctl.IsStandbySignal()
		out = append(out, fmt.Sprintf("data directory %s: Postgres, system identifier %d, timeline %d, state %q, standby.signal %t", cfg.Postgres.DataDir, sysid, cd.TimelineID, cd.State, standby))
	default:
		out = append(out, "data directory "+cfg.Postgres.DataDir+": empty or missing")
	}
	primary := ""
	clusterSysID := uint64(0)
	if view != nil {
		clusterSysID = view.SystemIdentifier
		for _, n := range view.Nodes {
			if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
				primary = n.Name
			}
		}
	}
	switch {
	case sysid != 0 && clusterSysID != 0 && sysid != clusterSysID:
		return out, fmt.Errorf("would refuse: the data directory belongs to another cluster (system identifier %d, the cluster's is %d); nothing is changed", sysid, clusterSysID)
	case primary == cfg.Name && state == pgctl.DataDirValid:
		out = append(out, "would: start as the primary once its lease is renewed")
	case primary == cfg.Name:
		out = append(out, "would: wait: this node is the primary but its data directory is empty")
	case primary != "" && state != pgctl.DataDirValid:
		out = append(out, fmt.Sprintf("would: clone from %s (pg_basebackup through slot %s), start as its standby and register (standby_register)", primary, fsm.SlotName(cfg.Name)))
	case primary != "" && !standby:
		out = append(out, fmt.Sprintf("would: rewind from %s (pg_rewind; a fresh clone if that cannot work) and follow it as a standby", primary))
	case primary != "":
		out = append(out, fmt.Sprintf("would: follow %s as a standby (write primary_conninfo, start in recovery)", primary))
	case state == pgctl.DataDirValid:
		out = append(out, "would: adopt the existing data directory as the bootstrap primary")
	case cfg.Bootstrap || view == nil:
		out = append(out, "would: initdb a new cluster and start it as the bootstrap primary")
	default:
		out = append(out, "would: wait for a primary, then clone from it")
	}
	return out, nil
}

// askCluster asks the sidecar at this config's own address (if it runs) and
// each join address for cluster show.
func askCluster(ctx context.Context, cfg *config.Config) (*pb.ShowResponse, string) {
	opts, err := DialOptions(cfg.TLS)
	if err != nil {
		return nil, ""
	}
	for _, addr := range append([]string{cfg.GRPCAdvertise()}, cfg.Join...) {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := pb.NewClusterServiceClient(conn).Show(cctx, &pb.ShowRequest{})
		cancel()
		_ = conn.Close()
		if err == nil {
			return resp, addr
		}
	}
	return nil, ""
}
