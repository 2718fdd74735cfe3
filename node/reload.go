package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/clusterconf"
	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The node's own YAML file is read again on SIGHUP and on `hasidecar
// reload` (NodeService.ReloadConfig). The keys of config.LiveKeys take
// effect at once: they are read through n.conf(), an atomic snapshot that a
// reload replaces whole. Every other key keeps the value the sidecar
// started with (n.cfg, never written after New) until it restarts; a file
// that no longer loads changes nothing.

// conf is the running configuration: n.cfg with the live keys of the last
// reload. Read the live keys (priority, tags, log level, event command,
// postgres.parameters and postgres.hba) through it, and only through it.
func (n *Node) conf() *config.Config { return n.live.Load() }

// SetConfigFile names the file SIGHUP and `hasidecar reload` read again
// ("" : none, a reload then says so). Call it before Run.
func (n *Node) SetConfigFile(path string) { n.cfgPath = path }

// Reload asks the sidecar to read its config file again, as on SIGHUP; it
// returns at once (the reload loop does it and logs what changed).
func (n *Node) Reload() {
	select {
	case n.reloadCh <- struct{}{}:
	default:
	}
}

// reloadLoop runs the reloads SIGHUP asks for.
func (n *Node) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.reloadCh:
			n.reloadConfig(ctx, "SIGHUP")
		}
	}
}

// reloadConfig reads the config file again and applies its live keys; it
// logs and returns what it did. why names the asker in the log.
func (n *Node) reloadConfig(ctx context.Context, why string) *pb.ReloadConfigResponse {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	resp := &pb.ReloadConfigResponse{}
	if n.tls != nil {
		changed, err := n.tls.Reload()
		switch {
		case err != nil:
			n.logger.Error("tls: renewed certificate files not loaded; still using the previous ones", "error", err)
		case changed:
			resp.TlsReloaded = true
			n.logger.Info("tls: certificate files reloaded", "cert", n.tls.Files().Cert, "not_after", n.tls.NotAfter().UTC().Format(time.RFC3339))
		}
		n.metrics.setCertExpiry(n.tls.NotAfter())
	}
	if n.cfgPath == "" {
		resp.Error = "this sidecar was not started from a config file: nothing to reload"
		return resp
	}
	file, err := config.Load(n.cfgPath)
	if err == nil && file.Name != n.cfg.Name {
		err = fmt.Errorf("config %s: name is %q, this sidecar runs as %q: a node cannot be renamed by a reload", n.cfgPath, file.Name, n.cfg.Name)
	}
	if err != nil {
		resp.Error = err.Error()
		n.logger.Error("config reload ("+why+"): the file does not load; nothing was changed, the running configuration stays", "error", err)
		return resp
	}
	cur := n.conf()
	p := config.PlanReload(cur, file)
	resp.Reloaded = p.Live
	clusterKeys := map[string]bool{}
	for _, k := range clusterconf.Keys {
		if k.YAML != "" {
			clusterKeys[k.YAML] = true
		}
	}
	for _, k := range p.Restart {
		if clusterKeys[k] {
			resp.ClusterWide = append(resp.ClusterWide, k)
		} else {
			resp.NeedRestart = append(resp.NeedRestart, k)
		}
	}
	n.live.Store(p.Next)
	if p.Next.LogLevel != cur.LogLevel {
		n.logger.SetLevel(hclog.LevelFromString(p.Next.LogLevel))
	}
	if n.pg != nil {
		n.pg.SetNodeConfig(p.Next)
	}
	if slices.ContainsFunc(p.Live, func(k string) bool { return k == "priority" || k == "tags" }) {
		n.wakeRegister() // the nodes table row: proposed to the leader
	}
	for _, k := range resp.NeedRestart {
		n.logger.Warn("config reload: "+k+" changed in the file, but only a restart of the sidecar applies it; the running value stays", "key", k)
	}
	for _, k := range resp.ClusterWide {
		n.logger.Warn("config reload: "+k+" is a cluster-wide key: the cluster's configuration applies, not this file (change it with `hasidecar config set`)", "key", k)
	}
	if len(p.Live) > 0 {
		n.logger.Info("config reloaded ("+why+")", "changed", strings.Join(p.Live, ", "))
	} else {
		n.logger.Info("config reloaded (" + why + "): no live key changed")
	}
	return resp
}

// pendingAfterReload: how long after the reload signal pending_restart is
// read.
const pendingAfterReload = 300 * time.Millisecond

// wakeRegister makes registerSelfLoop compare this node's row with its
// configuration now.
func (n *Node) wakeRegister() {
	select {
	case n.registerWake <- struct{}{}:
	default:
	}
}

// ReloadConfig is `hasidecar reload` on this node: what SIGHUP does, then
// (asked for by the CLI) the keeper rewrites the managed files from the
// reloaded configuration and reloads Postgres.
func (s *nodeService) ReloadConfig(ctx context.Context, req *pb.ReloadConfigRequest) (*pb.ReloadConfigResponse, error) {
	n := s.n
	resp := n.reloadConfig(ctx, "asked by an operator")
	if resp.Error != "" || !req.Postgres || n.pg == nil {
		return resp, nil
	}
	if err := n.pg.ReloadPostgres(ctx); err != nil {
		return nil, refuse("reload postgres on %s: %v", n.cfg.Name, err)
	}
	resp.PostgresReloaded = true
	// The postmaster reads its files after the signal, and the backends
	// after it: pending_restart shows a moment later.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(pendingAfterReload):
	}
	pctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	pending, err := n.pgc.PendingRestart(pctx)
	if err != nil {
		n.logger.Warn("after the reload", "error", err)
	}
	resp.PendingRestart = pending
	return resp, nil
}

// PendingSettings lists what this node's Postgres waits to restart for.
func (s *nodeService) PendingSettings(ctx context.Context, _ *pb.PendingSettingsRequest) (*pb.PendingSettingsResponse, error) {
	return s.n.pendingSettings(ctx)
}

func (n *Node) pendingSettings(ctx context.Context) (*pb.PendingSettingsResponse, error) {
	if n.pgc == nil {
		return nil, refuse("%s is a witness: it has no Postgres", n.cfg.Name)
	}
	cctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	ps, err := n.pgc.PendingSettings(cctx)
	if err != nil {
		return nil, err
	}
	resp := &pb.PendingSettingsResponse{}
	for _, p := range ps {
		resp.Settings = append(resp.Settings, &pb.PendingSetting{Name: p.Name, Running: p.Running, Pending: p.Pending,
			LowersHotStandby: config.LowersHotStandby(p.Name, p.Running, p.Pending)})
	}
	return resp, nil
}
