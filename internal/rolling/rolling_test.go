package rolling

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestBestSwitchoverTarget: the rolling restart switches over to the
// streaming standby with the least lag, then the highest priority; never
// to one that could not be promoted.
func TestBestSwitchoverTarget(t *testing.T) {
	sb := func(name string, lag int64, prio int32, f func(*pb.NodeView)) *pb.NodeView {
		n := &pb.NodeView{Name: name, Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, LagBytes: lag, Priority: prio,
			Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, WalReceiverStatus: "streaming"}}
		if f != nil {
			f(n)
		}
		return n
	}
	primary := &pb.NodeView{Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Priority: 100, Postgres: &pb.PostgresStatus{Running: true}}
	for _, tc := range []struct {
		name  string
		nodes []*pb.NodeView
		want  string
	}{
		{"least lag", []*pb.NodeView{primary, sb("pg2", 900, 100, nil), sb("pg3", 10, 100, nil)}, "pg3"},
		{"same lag: higher priority", []*pb.NodeView{primary, sb("pg2", 0, 50, nil), sb("pg3", 0, 100, nil)}, "pg3"},
		{"not streaming", []*pb.NodeView{primary, sb("pg2", 0, 100, func(n *pb.NodeView) { n.Postgres.WalReceiverStatus = "" }), sb("pg3", 500, 100, nil)}, "pg3"},
		{"maintenance, priority 0, nofailover, unknown lag", []*pb.NodeView{primary,
			sb("pg2", 0, 100, func(n *pb.NodeView) { n.Maintenance = true }),
			sb("pg3", 0, 0, nil),
			sb("pg4", 0, 100, func(n *pb.NodeView) { n.Tags = []string{"nofailover"} }),
			sb("pg5", -1, 100, nil)}, ""},
		{"a witness", []*pb.NodeView{primary, {Name: "w", Kind: pb.NodeKind_NODE_KIND_WITNESS, Priority: 100}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BestSwitchoverTarget(&pb.ShowResponse{Nodes: tc.nodes}, "pg1"); got != tc.want {
				t.Fatalf("target %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOrderRestart: raising keeps standbys first then the switchover;
// lowering a hot-standby setting restarts the primary first, in place.
func TestOrderRestart(t *testing.T) {
	sb := func(n string) Step { return Step{StepRestart, n} }
	inPlace := Step{StepPrimaryInPlace, "pg1"}
	sw := Step{StepSwitchover, "pg1"}
	low := []string{"max_connections 150 → 120"}
	for _, tc := range []struct {
		name        string
		standbys    []string
		withPrimary bool
		rolling     bool
		lowered     []string
		want        []Step
		wantErr     string
	}{
		{"rolling, raising", []string{"pg2", "pg3"}, true, true, nil, []Step{sb("pg2"), sb("pg3"), sw}, ""},
		{"rolling, lowering", []string{"pg2", "pg3"}, true, true, low, []Step{inPlace, sb("pg2"), sb("pg3")}, ""},
		{"standbys only, raising", []string{"pg2"}, false, true, nil, []Step{sb("pg2")}, ""},
		{"the primary alone, raising", nil, true, false, nil, []Step{inPlace}, ""},
		{"the primary alone, lowering", nil, true, false, low, []Step{inPlace}, ""},
		{"a standby alone while the primary lowers", []string{"pg2"}, false, false, low, nil, "restart the primary first"},
		{"--pending, standbys only pending, primary lowering", []string{"pg2", "pg3"}, false, true, low, nil, "restart the primary first"},
		{"nothing", nil, false, true, nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := orderRestart("pg1", tc.standbys, tc.withPrimary, tc.rolling, tc.lowered)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("steps %v, want %v", got, tc.want)
			}
		})
	}
}

// fakeCluster is a primary pg1 and standbys whose replay lags behind the
// primary's restart for a few looks at the view, as on a loaded host.
type fakeCluster struct {
	mu       sync.Mutex
	nodes    map[string]*pb.NodeView
	lagShows int               // views a standby's replay stays behind after the primary's restart
	replayAt map[string]uint64 // a standby's replay LSN when its restart was asked
	order    []string
}

func newFakeCluster(lagShows int) *fakeCluster {
	f := &fakeCluster{nodes: map[string]*pb.NodeView{}, lagShows: lagShows, replayAt: map[string]uint64{}}
	f.nodes["pg1"] = &pb.NodeView{Id: 1, Name: "pg1", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY,
		Postgres: &pb.PostgresStatus{Running: true, CurrentLsn: 500, PostmasterStartUnixMs: 1}}
	for i, n := range []string{"pg2", "pg3"} {
		f.nodes[n] = &pb.NodeView{Id: uint32(i + 2), Name: n, Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY,
			Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, WalReceiverStatus: "streaming", ReplayLsn: 500, PostmasterStartUnixMs: 1}}
	}
	return f
}

func (f *fakeCluster) Show(context.Context) (*pb.ShowResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes["pg1"].Postgres.CurrentLsn > 500 {
		if f.lagShows > 0 {
			f.lagShows--
		} else {
			for _, n := range []string{"pg2", "pg3"} {
				f.nodes[n].Postgres.ReplayLsn = f.nodes["pg1"].Postgres.CurrentLsn
			}
		}
	}
	v := &pb.ShowResponse{}
	for _, n := range []string{"pg1", "pg2", "pg3"} {
		v.Nodes = append(v.Nodes, proto.Clone(f.nodes[n]).(*pb.NodeView))
	}
	return v, nil
}

func (f *fakeCluster) Restart(_ context.Context, n *pb.NodeView) (*pb.RestartPostgresResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pg := f.nodes[n.Name].Postgres
	resp := &pb.RestartPostgresResponse{Role: f.nodes[n.Name].Role, PostmasterStartUnixMs: pg.PostmasterStartUnixMs}
	pg.PostmasterStartUnixMs++
	f.order = append(f.order, n.Name)
	if n.Name == "pg1" {
		pg.CurrentLsn = 900 // its startup wrote XLOG_PARAMETER_CHANGE
	} else {
		f.replayAt[n.Name] = pg.ReplayLsn
	}
	return resp, nil
}

func (f *fakeCluster) Switchover(context.Context, string, time.Duration) (*pb.SwitchoverResponse, error) {
	return nil, errors.New("no switchover in a lowering restart")
}

func (f *fakeCluster) PendingSettings(context.Context, *pb.NodeView) (*pb.PendingSettingsResponse, error) {
	return &pb.PendingSettingsResponse{}, nil
}

// TestRunLoweringWaitsForReplay: after the primary's in-place restart
// lowers a hot-standby setting, no standby is restarted before it has
// replayed the primary's WAL past that restart (else Postgres refuses to
// start it: "recovery aborted because of insufficient parameter
// settings", seen in TestRestartPending).
func TestRunLoweringWaitsForReplay(t *testing.T) {
	f := newFakeCluster(4)
	view, _ := f.Show(context.Background())
	plan, err := NewPlan(view, 0, false, []string{"max_connections 150 → 120"})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	out, err := plan.Run(context.Background(), f, time.Now().Add(30*time.Second), func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatalf("run: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if want := []string{"pg1", "pg2", "pg3"}; !slices.Equal(f.order, want) {
		t.Fatalf("restarted %v, want %v", f.order, want)
	}
	for _, n := range []string{"pg2", "pg3"} {
		if got := f.replayAt[n]; got < 900 {
			t.Errorf("%s restarted at replay %d, before the primary's restart at 900\n%s", n, got, strings.Join(lines, "\n"))
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "waiting for pg2 to replay the primary's WAL up to 0/384")
	}) {
		t.Errorf("no progress line about the wait:\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("%s\n%s", out, strings.Join(lines, "\n"))
}
