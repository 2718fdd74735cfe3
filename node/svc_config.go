package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/clusterconf"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// configService is the runtime cluster configuration (clusterconf/): the
// operator's `config show|set|history`. It answers on the Raft leader only
// (a follower answers not_leader, which the CLI follows): Set validates
// and proposes there, so that the version it checks is the one it commits
// against.
type configService struct {
	pb.UnimplementedConfigServiceServer
	n *Node
}

// configProbeTimeout bounds how long `config show` waits for a node's own
// answer (its local overrides and drift).
const configProbeTimeout = time.Second

func (s *configService) Show(ctx context.Context, _ *pb.ConfigShowRequest) (*pb.ConfigShowResponse, error) {
	n := s.n
	if err := n.requireLeader(ctx); err != nil {
		return nil, err
	}
	st := n.fsm.State()
	resp := &pb.ConfigShowResponse{Settings: proto.Clone(settingsOf(st)).(*pb.Settings), AnsweredBy: n.cfg.Name}
	var rows []*pb.Node
	for _, row := range st.Nodes {
		if row.Kind == pb.NodeKind_NODE_KIND_DATA {
			rows = append(rows, row)
		}
	}
	slices.SortFunc(rows, func(a, b *pb.Node) int { return strings.Compare(a.Name, b.Name) })
	resp.Nodes = make([]*pb.NodeConfig, len(rows))
	cctx, cancel := context.WithTimeout(ctx, configProbeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i, row := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp.Nodes[i] = n.nodeConfig(cctx, row)
		}()
	}
	wg.Wait()
	return resp, nil
}

// nodeConfig asks one node (this one without a call) for its local
// overrides, drift and pending restarts.
func (n *Node) nodeConfig(ctx context.Context, row *pb.Node) *pb.NodeConfig {
	out := &pb.NodeConfig{Name: row.Name}
	var sr *pb.StatusResponse
	if row.Id == n.ID() {
		sr = n.status()
	} else {
		conn, err := n.peers.get(row.GrpcAddress)
		if err == nil {
			sr, err = pb.NewNodeServiceClient(conn).Status(ctx, &pb.StatusRequest{})
		}
		if err != nil {
			out.Error = fmt.Sprintf("did not answer: %s", status.Convert(err).Message())
			return out
		}
	}
	out.LocalParameters = sr.LocalParameters
	out.Drift = sr.ConfigDrift
	out.PendingRestart = sr.Postgres.GetPendingRestart()
	return out
}

func settingsOf(st *pb.ClusterState) *pb.Settings {
	if s := st.GetSettings(); s != nil {
		return s
	}
	return &pb.Settings{}
}

// Set validates the changes against the key table, checks Postgres
// settings with the primary (pgctl.CheckSettings), then proposes a
// SetConfig at the version it read (or the one the caller names): a bad
// key or value is refused with the key named, and nothing is proposed.
func (s *configService) Set(ctx context.Context, req *pb.ConfigSetRequest) (*pb.ConfigSetResponse, error) {
	n := s.n
	if err := n.requireLeader(ctx); err != nil {
		return nil, err
	}
	cur := settingsOf(n.fsm.State())
	version := cur.ConfigVersion
	if req.Version != 0 && req.Version != version {
		return nil, refuse("the configuration is at version %d, not %d: it changed since it was read; read it again (hasidecar config show) and redo the change", version, req.Version)
	}
	next, diffs, err := clusterconf.Apply(cur, req.Changes)
	if err != nil {
		return nil, invalid("%v", err)
	}
	resp := &pb.ConfigSetResponse{Version: version}
	if len(diffs) == 0 {
		return resp, nil
	}
	if err := fsm.CheckSettings(n.fsm.State(), next); err != nil {
		return nil, invalid("%v; nothing changed", err)
	}
	params := map[string]string{}
	var unset []string
	for _, d := range diffs {
		if name, ok := strings.CutPrefix(d.Key, clusterconf.ParamPrefix); ok {
			if d.Has {
				params[name] = d.New
			} else {
				unset = append(unset, name)
			}
		}
	}
	if len(params) > 0 || len(unset) > 0 {
		check, err := n.checkParameters(ctx, params, unset)
		if err != nil {
			return nil, err
		}
		if len(check.Problems) > 0 {
			msgs := make([]string, len(check.Problems))
			for i, p := range check.Problems {
				msgs[i] = clusterconf.ParamPrefix + p.Name + ": " + p.Reason
			}
			return nil, invalid("%s; nothing changed", strings.Join(msgs, "; "))
		}
		resp.Restart = check.Restart
	}
	for _, d := range diffs {
		resp.Diff = append(resp.Diff, d.String())
	}
	if req.DryRun {
		return resp, nil
	}
	if _, err := n.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: &pb.SetConfig{Version: version, Changes: req.Changes}}}); err != nil {
		return nil, fmt.Errorf("committing the configuration change: %w", err)
	}
	resp.Version = next.ConfigVersion + 1
	return resp, nil
}

// checkParameters asks the primary's Postgres whether it accepts the
// values: this node's own when it is the primary, else the primary's
// sidecar (PeerService.CheckParameters). Without a running primary the
// change is refused: an unchecked value could stop every Postgres at its
// next start.
func (n *Node) checkParameters(ctx context.Context, params map[string]string, unset []string) (*pb.CheckParametersResponse, error) {
	st := n.fsm.State()
	p := fsm.Primary(st)
	if p == nil {
		return nil, refuse("the cluster has no primary to check the Postgres settings with; nothing changed, try again when it has one")
	}
	if p.Id == n.ID() {
		return n.checkParametersLocal(ctx, params, unset)
	}
	conn, err := n.peers.get(p.GrpcAddress)
	if err != nil {
		return nil, refuse("checking the Postgres settings with the primary %q: %v; nothing changed", p.Name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	resp, err := pb.NewPeerServiceClient(conn).CheckParameters(cctx, &pb.CheckParametersRequest{Parameters: params, Unset: unset})
	if err != nil {
		return nil, refuse("checking the Postgres settings with the primary %q: %s; nothing changed", p.Name, status.Convert(err).Message())
	}
	return resp, nil
}

func (n *Node) checkParametersLocal(ctx context.Context, params map[string]string, unset []string) (*pb.CheckParametersResponse, error) {
	if n.pgc == nil {
		return nil, status.Error(codes.Unavailable, n.cfg.Name+" has no Postgres")
	}
	problems, restart, err := n.pgc.CheckSettings(ctx, params)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if len(unset) > 0 {
		more, err := n.pgc.RestartSettings(ctx, unset)
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		restart = append(restart, more...)
		slices.Sort(restart)
	}
	return checkResponse(problems, restart), nil
}

func checkResponse(problems []pgctl.SettingProblem, restart []string) *pb.CheckParametersResponse {
	resp := &pb.CheckParametersResponse{Restart: restart}
	for _, p := range problems {
		resp.Problems = append(resp.Problems, &pb.ParameterProblem{Name: p.Name, Reason: p.Reason})
	}
	return resp
}

// CheckParameters (PeerService): the leader asks the primary's sidecar.
func (s *peerService) CheckParameters(ctx context.Context, req *pb.CheckParametersRequest) (*pb.CheckParametersResponse, error) {
	n := s.n
	me := fsm.NodeByName(n.fsm.State(), n.cfg.Name)
	if n.pgc == nil || me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return nil, status.Error(codes.Unavailable, n.cfg.Name+" is not the primary")
	}
	return n.checkParametersLocal(ctx, maps.Clone(req.Parameters), slices.Clone(req.Unset))
}

// History lists the config_changed events the events table holds.
func (s *configService) History(ctx context.Context, req *pb.ConfigHistoryRequest) (*pb.ConfigHistoryResponse, error) {
	n := s.n
	if err := n.requireLeader(ctx); err != nil {
		return nil, err
	}
	st := n.fsm.State()
	resp := &pb.ConfigHistoryResponse{}
	for i := len(st.Events) - 1; i >= 0; i-- {
		if e := st.Events[i]; e.Type == fsm.EventConfigChanged {
			resp.Events = append(resp.Events, proto.Clone(e).(*pb.Event))
			if req.Limit > 0 && len(resp.Events) >= int(req.Limit) {
				break
			}
		}
	}
	return resp, nil
}
