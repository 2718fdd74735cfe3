package leader

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// fakePeers answers LSN questions from a table (a missing node does not
// answer) and holds pushed reports.
type fakePeers struct {
	lsn     map[string]*pb.LSNResponse
	reports map[uint32]time.Time
	asked   [][]string
}

func (p *fakePeers) LSNs(_ context.Context, nodes []*pb.Node, _ uint64, _ time.Duration) []*pb.LSNResponse {
	out := make([]*pb.LSNResponse, len(nodes))
	var names []string
	for i, n := range nodes {
		out[i] = p.lsn[n.Name]
		names = append(names, n.Name)
	}
	p.asked = append(p.asked, names)
	return out
}

func (p *fakePeers) Report(id uint32) (uint64, time.Time, bool) {
	at, ok := p.reports[id]
	return 100, at, ok
}

// fakeRaft is a Raft configuration the leader changes, at index (one more
// per change); failAdd refuses every promotion, failDemote every demotion,
// and a change at a stale prevIndex is refused as raft does.
type fakeRaft struct {
	servers             []Server
	index               uint64
	transferred         []string
	changes             []string // "+name" promoted, "-name" demoted, in order
	failAdd, failDemote bool
}

func (r *fakeRaft) Servers() ([]Server, uint64, error) { return slices.Clone(r.servers), r.index, nil }

func (r *fakeRaft) AddVoter(_ context.Context, s Server, prevIndex uint64) error {
	if r.failAdd {
		return errors.New("fake: no quorum")
	}
	if prevIndex != 0 && prevIndex != r.index {
		return errors.New("fake: configuration changed since")
	}
	r.setVoter(s.ID, true)
	r.changes = append(r.changes, "+"+s.ID)
	return nil
}

func (r *fakeRaft) DemoteVoter(_ context.Context, id string, prevIndex uint64) error {
	if r.failDemote {
		return errors.New("fake: no quorum")
	}
	if prevIndex != 0 && prevIndex != r.index {
		return errors.New("fake: configuration changed since")
	}
	r.setVoter(id, false)
	r.changes = append(r.changes, "-"+id)
	return nil
}

func (r *fakeRaft) setVoter(id string, voter bool) {
	r.index++
	for i := range r.servers {
		if r.servers[i].ID == id {
			r.servers[i].Voter = voter
		}
	}
}

func (r *fakeRaft) AppliedIndex() uint64 { return 100 }
func (r *fakeRaft) TransferLeadership(to Server) error {
	r.transferred = append(r.transferred, to.ID)
	return nil
}

func standbyAnswer(received uint64, timeline uint32) *pb.LSNResponse {
	return &pb.LSNResponse{Healthy: true, Timeline: timeline, Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, ReceiveLsn: received, ReplayLsn: received, WalReceiverStatus: "streaming"}}
}

// cluster: pg1 primary (term 1, lease 4 s renewed at the clock's start),
// pg2 and pg3 standbys, witness w1.
func cluster(t *testing.T, clk clock.Clock, settings *pb.Settings) *fakelog.Log {
	t.Helper()
	lg := fakelog.New(clk)
	must := func(cmd *pb.Command) { lg.MustApply(t, cmd) }
	if settings == nil {
		settings = &pb.Settings{}
	}
	settings.LeaseMs = 4000
	settings.MaximumLagOnFailover = 1 << 24
	must(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1", Settings: settings}}})
	for _, n := range []string{"pg1", "pg2", "pg3"} {
		must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: n, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100}}})
	}
	must(&pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: "w1", Kind: pb.NodeKind_NODE_KIND_WITNESS}}})
	must(&pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{NodeId: 1, LeaseMs: 4000}}})
	for _, id := range []uint32{2, 3} {
		must(&pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{NodeId: id, UpstreamId: 1, Term: 1}}})
	}
	must(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, FlushLsn: 1000, DurationMs: 4000, Timeline: 1}}})
	return lg
}

func newLeader(name string, clk clock.Clock, lg Log, peers Peers, rf Raft) *Leader {
	return New(Config{Name: name, Lease: 4 * time.Second, DriftMarginPercent: 10, MonitorInterval: time.Second, Clock: clk}, lg, peers, rf)
}

// TestDecide: the decider against a fake log and clock. The lease (4 s,
// 10 % drift) was applied at the clock's start.
func TestDecide(t *testing.T) {
	healthy := map[string]*pb.LSNResponse{"pg2": standbyAnswer(900, 1), "pg3": standbyAnswer(950, 1)}
	cases := []struct {
		name     string
		settings *pb.Settings
		release  bool          // pg1 releases its lease first
		advance  time.Duration // clock moved before Decide
		answers  map[string]*pb.LSNResponse
		// want: the Promote target ("" none) and the event recorded instead
		promote, event string
		detail         string // in the Promote's or the event's details
	}{
		{name: "lease held", advance: 4 * time.Second, answers: healthy},
		{name: "at the drift margin exactly: not yet", advance: 4400 * time.Millisecond, answers: healthy},
		{name: "expired: the most advanced standby", advance: 4401 * time.Millisecond, answers: healthy, promote: "pg3", detail: `the lease of "pg1" (term 1, serial`},
		{name: "released: at once", release: true, answers: healthy, promote: "pg3", detail: `"pg1" released its lease (gone)`},
		{name: "a standby too far behind is passed over", advance: 5 * time.Second,
			answers: map[string]*pb.LSNResponse{"pg2": standbyAnswer(900, 1), "pg3": standbyAnswer(1200, 2)}, promote: "pg2", detail: "pg3=0/4B0/tli2"},
		{name: "nobody answers", advance: 5 * time.Second, event: fsm.EventFailoverBlocked, detail: "pg2: did not answer; pg3: did not answer"},
		{name: "paused", settings: &pb.Settings{Paused: true}, advance: 5 * time.Second, answers: healthy, event: fsm.EventFailoverPaused, detail: "the cluster is paused"},
		{name: "manual", settings: &pb.Settings{FailoverMode: pb.FailoverMode_FAILOVER_MODE_MANUAL}, advance: 5 * time.Second, answers: healthy, event: fsm.EventFailoverPending, detail: "hasidecar failover --to NAME"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			lg := cluster(t, clk, tc.settings)
			if tc.release {
				lg.Apply(&pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: 1, Term: 1, Reason: "gone"}}})
			}
			peers := &fakePeers{lsn: tc.answers}
			l := newLeader("w1", clk, lg, peers, &fakeRaft{})
			clk.Advance(tc.advance)
			before := len(lg.Proposed())
			l.Decide(context.Background())
			l.Decide(context.Background()) // a second pass adds nothing: the decision or the note is made once
			props := lg.Proposed()[before:]
			st := lg.State()
			switch {
			case tc.promote != "":
				if len(props) != 1 || props[0].GetPromote() == nil {
					t.Fatalf("proposals %v, want one Promote", props)
				}
				p := props[0].GetPromote()
				if got := fsm.NodeByID(st, p.NodeId).GetName(); got != tc.promote || p.Term != 2 || p.Reason != fsm.EventFailover || p.LeaseMs != 4000 {
					t.Fatalf("Promote %v: node %s, want %s in term 2 (reason failover, lease 4000)", p, got, tc.promote)
				}
				if fsm.Primary(st).GetName() != tc.promote {
					t.Fatalf("primary after the decision: %v", fsm.Primary(st))
				}
				if !strings.Contains(p.Details, tc.detail) {
					t.Fatalf("details %q lack %q", p.Details, tc.detail)
				}
			case tc.event != "":
				if len(props) != 1 || props[0].GetRecordEvent().GetType() != tc.event {
					t.Fatalf("proposals %v, want one %s event", props, tc.event)
				}
				if d := props[0].GetRecordEvent().GetDetails(); !strings.Contains(d, tc.detail) {
					t.Fatalf("event details %q lack %q", d, tc.detail)
				}
			default:
				if len(props) != 0 {
					t.Fatalf("proposals %v, want none", props)
				}
				if len(peers.asked) != 0 {
					t.Fatalf("asked %v for LSNs while the lease holds", peers.asked)
				}
			}
		})
	}
}

// TestDecideStaleDecision: a renewal that commits while the candidates are
// asked makes the promotion stale; the FSM refuses it and the primary stays.
func TestDecideStaleDecision(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	lg := cluster(t, clk, nil)
	peers := &fakePeers{lsn: map[string]*pb.LSNResponse{"pg2": standbyAnswer(900, 1)}}
	l := newLeader("w1", clk, lg, peers, &fakeRaft{})
	clk.Advance(5 * time.Second)
	lg.FailWith(func(cmd *pb.Command) error {
		if cmd.GetPromote() != nil {
			lg.FailWith(nil)
			lg.Apply(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, DurationMs: 4000, Timeline: 1}}})
		}
		return nil
	})
	l.Decide(context.Background())
	if p := fsm.Primary(lg.State()); p.GetName() != "pg1" || lg.State().Term != 1 {
		t.Fatalf("after a stale decision: primary %v term %d, want pg1 in term 1", p, lg.State().Term)
	}
}

// TestDecideProposalFails: a proposal that does not commit (no quorum) is
// retried at the next pass.
func TestDecideProposalFails(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	lg := cluster(t, clk, nil)
	l := newLeader("w1", clk, lg, &fakePeers{lsn: map[string]*pb.LSNResponse{"pg2": standbyAnswer(900, 1)}}, &fakeRaft{})
	clk.Advance(5 * time.Second)
	lg.FailWith(func(*pb.Command) error { return errors.New("no quorum") })
	l.Decide(context.Background())
	if lg.State().Term != 1 {
		t.Fatal("promoted through a failing log")
	}
	lg.FailWith(nil)
	l.Decide(context.Background())
	if p := fsm.Primary(lg.State()); p.GetName() != "pg2" || lg.State().Term != 2 {
		t.Fatalf("after the retry: primary %v term %d, want pg2 in term 2", p, lg.State().Term)
	}
}

// TestNextWake: the decider wakes at the lease's expiry (+1 ms), at most
// IdleInterval later; once the lease expired, every DecideInterval.
func TestNextWake(t *testing.T) {
	cases := []struct {
		name    string
		advance time.Duration
		want    time.Duration // from the clock's time at the call
	}{
		{"far from expiry: at most IdleInterval", time.Second, IdleInterval},
		{"expiry in 800 ms", 3600 * time.Millisecond, 801 * time.Millisecond},
		{"expiry in 50 ms", 4350 * time.Millisecond, 51 * time.Millisecond},
		{"expired", 5 * time.Second, DecideInterval},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			lg := cluster(t, clk, nil)
			l := newLeader("w1", clk, lg, &fakePeers{}, &fakeRaft{})
			clk.Advance(tc.advance)
			if got := l.NextWake().Sub(clk.Now()); got != tc.want {
				t.Fatalf("NextWake in %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDriveSwitchover: the target is promoted once it received past the
// shutdown checkpoint; past the deadline the old primary gets its role back.
func TestDriveSwitchover(t *testing.T) {
	cases := []struct {
		name     string
		shutdown uint64
		received uint64
		advance  time.Duration
		want     string // the reason of the Promote, "" none
	}{
		{"still stopping", 0, 5000, time.Second, ""},
		{"target not past the checkpoint", 2000, 2000, time.Second, ""},
		{"target past the checkpoint", 2000, 2001, time.Second, fsm.EventSwitchover},
		{"deadline passed", 2000, 100, 61 * time.Second, fsm.ReasonSwitchoverRollback},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			lg := cluster(t, clk, nil)
			lg.Apply(&pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{FromId: 1, ToId: 2, Term: 1, DeadlineUnixMs: clk.Now().Add(60 * time.Second).UnixMilli()}}})
			if tc.shutdown != 0 {
				lg.Apply(&pb.Command{Cmd: &pb.Command_UpdateSwitchover{UpdateSwitchover: &pb.UpdateSwitchover{Term: 1, ShutdownLsn: tc.shutdown}}})
			}
			l := newLeader("w1", clk, lg, &fakePeers{lsn: map[string]*pb.LSNResponse{"pg2": standbyAnswer(tc.received, 1)}}, &fakeRaft{})
			clk.Advance(tc.advance)
			before := len(lg.Proposed())
			l.Decide(context.Background())
			props := lg.Proposed()[before:]
			if tc.want == "" {
				if len(props) != 0 {
					t.Fatalf("proposals %v, want none", props)
				}
				return
			}
			if len(props) != 1 || props[0].GetPromote().GetReason() != tc.want {
				t.Fatalf("proposals %v, want one Promote (%s)", props, tc.want)
			}
			if lg.State().Term != 2 || lg.State().Switchover != nil {
				t.Fatalf("after the decision: term %d, switchover %v", lg.State().Term, lg.State().Switchover)
			}
		})
	}
}

// TestBalanceLeadership: a leader that is the primary hands leadership to
// a fresh witness (else a standby) after 5 s, at most every 15 s, and not
// while a scheduled operation (which this leader runs) is in flight.
func TestBalanceLeadership(t *testing.T) {
	voters := []Server{{ID: "pg1", Address: "a1", Voter: true}, {ID: "pg2", Address: "a2", Voter: true}, {ID: "w1", Address: "a4", Voter: true}}
	cases := []struct {
		name    string
		self    string
		advance time.Duration
		fresh   []uint32 // nodes with a fresh report
		running bool     // a scheduled operation runs
		want    []string
	}{
		{"not the primary", "pg2", 6 * time.Second, []uint32{1, 4}, false, nil},
		{"too soon", "pg1", 3 * time.Second, []uint32{2, 4}, false, nil},
		{"to the witness", "pg1", 6 * time.Second, []uint32{2, 4}, false, []string{"w1"}},
		{"to a standby without a fresh witness", "pg1", 6 * time.Second, []uint32{2}, false, []string{"pg2"}},
		{"nobody fresh", "pg1", 6 * time.Second, nil, false, nil},
		{"not while a scheduled operation runs", "pg1", 6 * time.Second, []uint32{2, 4}, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			lg := cluster(t, clk, nil)
			if tc.running {
				lg.MustApply(t, &pb.Command{Cmd: &pb.Command_ScheduleOperation{ScheduleOperation: &pb.ScheduleOperation{Op: &pb.ScheduledOperation{
					Kind: pb.ScheduledKind_SCHEDULED_KIND_RESTART, AtUnixMs: clk.Now().Add(time.Second).UnixMilli()}}}})
				lg.MustApply(t, &pb.Command{Cmd: &pb.Command_EndScheduledOperation{EndScheduledOperation: &pb.EndScheduledOperation{
					Id: lg.State().GetScheduled().GetId(), Outcome: pb.ScheduledOutcome_SCHEDULED_OUTCOME_STARTED}}})
			}
			rf := &fakeRaft{servers: slices.Clone(voters)}
			peers := &fakePeers{reports: map[uint32]time.Time{}}
			l := newLeader(tc.self, clk, lg, peers, rf)
			clk.Advance(tc.advance)
			for _, id := range tc.fresh {
				peers.reports[id] = clk.Now()
			}
			// Keep the lease fresh: balancing is about a healthy primary.
			lg.Apply(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, DurationMs: 4000, Timeline: 1}}})
			l.Decide(context.Background())
			clk.Advance(time.Second)
			l.Decide(context.Background()) // within 15 s: no second attempt
			if strings.Join(rf.transferred, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("transferred to %v, want %v", rf.transferred, tc.want)
			}
		})
	}
}

// The test doubles implement the leader's interfaces.
var (
	_ Log   = (*fakelog.Log)(nil)
	_ Peers = (*fakePeers)(nil)
	_ Raft  = (*fakeRaft)(nil)
)
