package leader

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

const testReplaceAfter = 5 * time.Second

// member builders for the table: v = voter, n = non-voter; "dead" is
// silent past testReplaceAfter, "quiet" silent but not long enough.
func v(name, loc string) Member {
	return Member{Name: name, Voter: true, Location: loc, Registered: true, Healthy: true}
}
func nv(name, loc string) Member {
	return Member{Name: name, Location: loc, Registered: true, Healthy: true}
}
func witness(m Member) Member { m.Witness = true; return m }
func self(m Member) Member    { m.Self = true; return m }
func deadM(m Member) Member   { m.Healthy, m.Silent = false, testReplaceAfter+time.Second; return m }
func quiet(m Member) Member   { m.Healthy, m.Silent = false, testReplaceAfter-time.Second; return m }
func unreg(m Member) Member   { m.Registered = false; return m }

// TestPlanVoters: the pure choice, one rule per case.
func TestPlanVoters(t *testing.T) {
	cases := []struct {
		name             string
		max              int
		ms               []Member
		promote, demote  string
		whyContains      string
		nothingExplained bool
	}{
		{name: "at max, all live: nothing", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), v("pg3", "c"), nv("pg4", "a")}},
		{name: "fewer than max: promote", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), nv("pg3", "a"), nv("pg4", "c")}, promote: "pg4", whyContains: "fewer than max_voters 3"},
		{name: "fewer than max: a witness first", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), nv("pg4", "c"), witness(nv("w1", "a"))}, promote: "w1"},
		{name: "fewer than max: no healthy non-voter", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), deadM(nv("pg3", "c")), quiet(nv("pg4", "c")), unreg(nv("x", "c"))}},
		{name: "dead voter: replaced, spread to the empty location", max: 3,
			ms:      []Member{self(v("pg1", "a")), v("pg2", "b"), deadM(v("pg3", "c")), nv("pg4", "a"), nv("pg5", "c")},
			promote: "pg5", demote: "pg3", whyContains: `voter "pg3" has been silent for 6s`},
		{name: "dead voter: a witness takes its place", max: 3,
			ms:      []Member{self(v("pg1", "a")), v("pg2", "b"), deadM(v("pg3", "c")), nv("pg5", "c"), witness(nv("w1", "a"))},
			promote: "w1", demote: "pg3"},
		{name: "silent but not long enough", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), quiet(v("pg3", "c")), nv("pg5", "c")}},
		{name: "dead voter, no healthy non-voter: kept", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), deadM(v("pg3", "c")), deadM(nv("pg5", "c")), quiet(nv("pg6", "c"))}},
		{name: "two dead: the longest silent first", max: 5,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), v("pg3", "c"), deadM(v("pg4", "a")),
				func() Member { m := deadM(v("pg5", "b")); m.Silent += time.Minute; return m }(), nv("pg6", "a"), nv("pg7", "b")},
			promote: "pg7", demote: "pg5"},
		{name: "over max: a dead voter demoted", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), v("pg3", "c"), deadM(v("pg4", "a"))}, demote: "pg4", whyContains: "more than max_voters 3"},
		{name: "over max, all live: no live voter is demoted", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "b"), v("pg3", "c"), v("pg4", "a"), v("pg5", "b")}},
		{name: "the leader is never dead", max: 3,
			ms: []Member{deadM(self(v("pg1", "a"))), v("pg2", "b"), v("pg3", "c"), nv("pg4", "a")}},
		{name: "witness preferred: swaps with a data voter of the most crowded location", max: 3,
			ms:      []Member{self(v("pg1", "a")), v("pg2", "a"), v("pg3", "b"), witness(nv("w1", "c"))},
			promote: "w1", demote: "pg2", whyContains: "a witness is preferred"},
		{name: "witness preferred: not the leader, not a quiet voter", max: 3,
			ms:      []Member{self(v("pg1", "a")), quiet(v("pg2", "a")), v("pg3", "b"), witness(nv("w1", "c"))},
			promote: "w1", demote: "pg3"},
		{name: "witness not healthy: no swap", max: 3,
			ms: []Member{self(v("pg1", "a")), v("pg2", "a"), v("pg3", "b"), quiet(witness(nv("w1", "c")))}},
		{name: "max 1: the leader alone", max: 1,
			ms: []Member{self(v("pg1", "a")), nv("pg2", "b")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanVoters(tc.ms, tc.max, testReplaceAfter)
			if got.Promote != tc.promote || got.Demote != tc.demote {
				t.Fatalf("PlanVoters = %+v, want promote %q, demote %q", got, tc.promote, tc.demote)
			}
			if !strings.Contains(got.Why, tc.whyContains) {
				t.Fatalf("why %q lacks %q", got.Why, tc.whyContains)
			}
			if (got.Promote != "" || got.Demote != "") && got.Why == "" {
				t.Fatal("a step without a reason")
			}
		})
	}
}

// apply is the configuration after a step.
func apply(ms []Member, s VoterStep) []Member {
	out := slices.Clone(ms)
	for i := range out {
		switch out[i].Name {
		case s.Promote:
			out[i].Voter = true
		case s.Demote:
			out[i].Voter = false
		}
	}
	return out
}

func countVoters(ms []Member, pred func(Member) bool) int {
	n := 0
	for _, m := range ms {
		if m.Voter && pred(m) {
			n++
		}
	}
	return n
}

// TestPlanVotersProperties: over random configurations, a step never
// leaves more than max_voters voters (when there were at most that many),
// never fewer voters that are not dead, promotes only a healthy registered
// non-voter, demotes only a voter other than the leader, spreads across
// locations, and does its job (fills a gap, replaces a dead voter) when it
// can.
func TestPlanVotersProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxVoters := rapid.SampledFrom([]int{1, 3, 5, 7}).Draw(t, "max")
		n := rapid.IntRange(1, 10).Draw(t, "members")
		locs := []string{"a", "b", "c"}
		var ms []Member
		for i := range n {
			m := Member{
				Name:       fmt.Sprintf("n%d", i),
				Voter:      i == 0 || rapid.Bool().Draw(t, "voter"),
				Witness:    rapid.IntRange(0, 4).Draw(t, "witness") == 0,
				Location:   rapid.SampledFrom(locs).Draw(t, "loc"),
				Self:       i == 0,
				Registered: rapid.IntRange(0, 9).Draw(t, "registered") != 0,
				Healthy:    rapid.Bool().Draw(t, "healthy"),
				Silent:     time.Duration(rapid.IntRange(0, 12).Draw(t, "silent")) * time.Second,
			}
			if m.Healthy {
				m.Silent = min(m.Silent, time.Second) // a healthy member reported lately
			}
			if m.Self {
				m.Healthy, m.Silent = true, 0
			}
			ms = append(ms, m)
		}
		s := PlanVoters(ms, maxVoters, testReplaceAfter)
		after := apply(ms, s)
		notDead := func(m Member) bool { return !dead(m, testReplaceAfter) }
		all := func(Member) bool { return true }
		before, now := countVoters(ms, all), countVoters(after, all)
		if before <= maxVoters && now > maxVoters {
			t.Fatalf("%d voters after %+v, max %d", now, s, maxVoters)
		}
		if now > max(before, maxVoters) {
			t.Fatalf("%d voters after %+v, from %d", now, s, before)
		}
		if got, was := countVoters(after, notDead), countVoters(ms, notDead); got < was {
			t.Fatalf("live voters %d → %d after %+v", was, got, s)
		}
		byName := map[string]Member{}
		for _, m := range ms {
			byName[m.Name] = m
		}
		if s.Promote != "" {
			p := byName[s.Promote]
			if p.Voter || !p.Healthy || !p.Registered {
				t.Fatalf("promoted %+v", p)
			}
			// Spread: no eligible non-voter is a better choice.
			per := votersByLocation(ms, s.Demote)
			for _, m := range ms {
				if !m.Voter && m.Healthy && m.Registered && m.Name != p.Name {
					if m.Witness && !p.Witness {
						t.Fatalf("promoted data node %q over witness %q", p.Name, m.Name)
					}
					if m.Witness == p.Witness && per[m.Location] < per[p.Location] {
						t.Fatalf("promoted %q in %q (%d voters) over %q in %q (%d voters)", p.Name, p.Location, per[p.Location], m.Name, m.Location, per[m.Location])
					}
				}
			}
		}
		if s.Demote != "" {
			d := byName[s.Demote]
			if !d.Voter || d.Self {
				t.Fatalf("demoted %+v", d)
			}
			if !dead(d, testReplaceAfter) && (s.Promote == "" || !byName[s.Promote].Witness) {
				t.Fatalf("demoted live voter %q without a witness in its place: %+v", d.Name, s)
			}
		}
		// It acts when it can.
		candidate := false
		for _, m := range ms {
			if !m.Voter && m.Healthy && m.Registered {
				candidate = true
			}
		}
		deadVoters := countVoters(ms, func(m Member) bool { return dead(m, testReplaceAfter) })
		if candidate && (before < maxVoters || (before == maxVoters && deadVoters > 0)) && s.Promote == "" {
			t.Fatalf("no promotion with a candidate, %d voters (%d dead), max %d", before, deadVoters, maxVoters)
		}
		if before > maxVoters && deadVoters > 0 && s.Demote == "" {
			t.Fatalf("%d voters, max %d, %d dead: nothing demoted", before, maxVoters, deadVoters)
		}
	})
}

// votersCluster: the leader test cluster (pg1 primary, pg2, pg3, w1) plus
// pg4 and pg5 in location z2 (the others have none), max_voters 3, voter_replace_after 5 s; Raft has pg1, pg2
// and w1 as voters (w1 leads), pg3, pg4, pg5 as non-voters, and the rows
// agree.
func votersCluster(t *testing.T, clk *clock.Manual) (*fakelog.Log, *fakeRaft) {
	t.Helper()
	lg := cluster(t, clk, &pb.Settings{MaxVoters: 3, VoterReplaceAfterMs: testReplaceAfter.Milliseconds()})
	for _, n := range []string{"pg4", "pg5"} {
		lg.MustApply(t, &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: n, Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100, Location: "z2"}}})
	}
	rf := &fakeRaft{}
	for _, row := range lg.State().Nodes {
		voter := row.Name == "pg1" || row.Name == "pg2" || row.Name == "w1"
		rf.servers = append(rf.servers, Server{ID: row.Name, Address: row.Name + ":1", Voter: voter})
		if voter {
			lg.MustApply(t, &pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: row.Id, Voter: true}}})
		}
	}
	return lg, rf
}

// TestManageVoters: the leader's execution of PlanVoters against the fake
// log and Raft: a silent voter replaced (promotion first, then demotion,
// each recorded), nothing without a healthy non-voter or before
// voter_replace_after, no demotion after a failed promotion, the demotion
// retried after a failed one, nothing while the lease has expired.
func TestManageVoters(t *testing.T) {
	cases := []struct {
		name       string
		silent     []string // nodes whose reports stop (all others report every second)
		advance    time.Duration
		renew      bool // the primary keeps its lease
		failAdd    bool
		failDemote bool
		// want: Raft changes after two passes, then the events recorded
		changes []string
		events  []string
	}{
		{name: "a silent voter is replaced", silent: []string{"pg2"}, advance: 6 * time.Second, renew: true,
			changes: []string{"+pg4", "-pg2"}, events: []string{"voter_added pg4", "voter_demoted pg2"}},
		{name: "not silent long enough", silent: []string{"pg2"}, advance: 4 * time.Second, renew: true},
		{name: "no healthy non-voter: the dead voter stays", silent: []string{"pg2", "pg3", "pg4", "pg5"}, advance: 6 * time.Second, renew: true},
		{name: "a failed promotion demotes nobody", silent: []string{"pg2"}, advance: 6 * time.Second, renew: true, failAdd: true},
		{name: "a failed demotion is retried", silent: []string{"pg2"}, advance: 6 * time.Second, renew: true, failDemote: true,
			changes: []string{"+pg4", "-pg2"}, events: []string{"voter_added pg4", "voter_demoted pg2"}},
		{name: "the lease expired: failover first", silent: []string{"pg2"}, advance: 6 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			lg, rf := votersCluster(t, clk)
			rf.failAdd, rf.failDemote = tc.failAdd, tc.failDemote
			peers := &fakePeers{reports: map[uint32]time.Time{}}
			l := newLeader("w1", clk, lg, peers, rf)
			l.Decide(context.Background()) // on becoming leader: it sees the configuration
			for range int(tc.advance / time.Second) {
				clk.Advance(time.Second)
				for _, row := range lg.State().Nodes {
					if !slices.Contains(tc.silent, row.Name) {
						peers.reports[row.Id] = clk.Now()
					}
				}
				if tc.renew {
					lg.Apply(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, DurationMs: 4000, Timeline: 1}}})
				}
			}
			before := len(lg.State().Events)
			l.Decide(context.Background())
			rf.failDemote = false
			l.Decide(context.Background())
			l.Decide(context.Background()) // and then nothing more
			if strings.Join(rf.changes, ",") != strings.Join(tc.changes, ",") {
				t.Fatalf("raft changes %v, want %v", rf.changes, tc.changes)
			}
			st := lg.State()
			var events []string
			for _, e := range st.Events[before:] {
				if e.Type == fsm.EventVoterAdded || e.Type == fsm.EventVoterDemoted {
					events = append(events, e.Type+" "+e.NodeName)
				}
			}
			if strings.Join(events, ",") != strings.Join(tc.events, ",") {
				t.Fatalf("events %v, want %v", events, tc.events)
			}
			// The rows follow Raft's configuration.
			for _, s := range rf.servers {
				if row := fsm.NodeByName(st, s.ID); row.Voter != s.Voter {
					t.Fatalf("row %s voter %v, raft says %v", s.ID, row.Voter, s.Voter)
				}
			}
		})
	}
}

// TestManageVotersRowFollowsRaft: a row whose voter flag disagrees with
// Raft (a lost SetVoter, a stale re-registration) is set right.
func TestManageVotersRowFollowsRaft(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	lg, rf := votersCluster(t, clk)
	pg4 := fsm.NodeByName(lg.State(), "pg4")
	lg.MustApply(t, &pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: pg4.Id, Voter: true}}})
	l := newLeader("w1", clk, lg, &fakePeers{reports: map[uint32]time.Time{}}, rf)
	l.Decide(context.Background())
	if fsm.NodeByName(lg.State(), "pg4").Voter {
		t.Fatal("pg4's row still says voter; raft says non-voter")
	}
	if len(rf.changes) != 0 {
		t.Fatalf("raft changed: %v", rf.changes)
	}
}

// TestManageVotersNewMember: a voter that joined a moment ago and has not
// reported yet is not silent for the whole leadership.
func TestManageVotersNewMember(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	lg, rf := votersCluster(t, clk)
	peers := &fakePeers{reports: map[uint32]time.Time{}}
	l := newLeader("w1", clk, lg, peers, rf)
	l.Decide(context.Background())
	lg.MustApply(t, &pb.Command{Cmd: &pb.Command_RegisterNode{RegisterNode: &pb.RegisterNode{ClusterName: "c1", Name: "pg6", Kind: pb.NodeKind_NODE_KIND_DATA, Priority: 100, Voter: true}}})
	for range 10 {
		clk.Advance(time.Second)
		for _, row := range lg.State().Nodes {
			if row.Name != "pg6" {
				peers.reports[row.Id] = clk.Now()
			}
		}
		lg.Apply(&pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: &pb.RenewLease{NodeId: 1, Term: 1, DurationMs: 4000, Timeline: 1}}})
		if clk.Now().Sub(l.since) == 7*time.Second {
			// pg6 joins as a voter (above max_voters: a re-addressed member, say).
			rf.servers = append(rf.servers, Server{ID: "pg6", Address: "pg6:1", Voter: true})
		}
		l.Decide(context.Background())
	}
	if len(rf.changes) != 0 {
		t.Fatalf("raft changes %v: pg6 joined 3 s ago, it is not silent past 5 s", rf.changes)
	}
	clk.Advance(3 * time.Second)
	l.Decide(context.Background())
	if strings.Join(rf.changes, ",") != "-pg6" {
		t.Fatalf("raft changes %v, want pg6 demoted once silent past 5 s with 4 voters", rf.changes)
	}
}
