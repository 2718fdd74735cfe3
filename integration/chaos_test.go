package integration

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestChaos runs seeded rounds of the chaos design's faults (docs/DESIGN.md) on one
// lab (3 data nodes and a witness, each in its own network namespace,
// synchronous mode, a writer and a prober running throughout). Each round
// fires one fault at the node that holds the role when it fires, heals,
// waits for the cluster to converge and checks:
//
//   - converged: one primary, every other data node streaming from it on
//     its timeline, every member running;
//   - the number of promotions (term increments) the fault allows;
//   - at most one node accepted a write at any moment, and no node took
//     writes again once another had (prober);
//   - every write the application saw acknowledged is on the primary (no
//     wait for catch-up: synchronous mode is the guarantee).
//
// After the last round: every acknowledged write is on every node, and the
// decision record holds (terms strictly increase, every promotion of
// Postgres names a committed decision for that node and term, at most one
// per term).
//
// make test runs the short form: every fault once, in the order of seed 1
// (about 2.5 minutes); make chaos the long one (CHAOS_ROUNDS, a random
// seed). CHAOS_SEED replays a run (the same schedule as long as the fault
// list below is unchanged); CHAOS_FAULTS=a,b runs exactly those faults in
// that order.
func TestChaos(t *testing.T) {
	seed := envUint(t, "CHAOS_SEED", 1)
	rounds := int(envUint(t, "CHAOS_ROUNDS", uint64(len(faults))))
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	runChaos(t, seed, rng, chaosSchedule(t, rng, rounds))
}

// TestLeaderKillAfterHeal is the fencing issue's needless failover, on
// repeat: CHAOS_LEADER_AFTER_HEAL rounds of leader-after-heal on one lab,
// each with zero promotions, no fence of the primary and writes going on
// after the kill. About a minute a round, so make test skips it:
//
//	CHAOS_LEADER_AFTER_HEAL=10 go test -count=1 -v -run 'TestLeaderKillAfterHeal$' ./integration/
//
// (CHAOS_SEED as for TestChaos.)
func TestLeaderKillAfterHeal(t *testing.T) {
	if os.Getenv("CHAOS_LEADER_AFTER_HEAL") == "" {
		t.Skip("CHAOS_LEADER_AFTER_HEAL=<rounds> runs it (about a minute a round)")
	}
	n := int(envUint(t, "CHAOS_LEADER_AFTER_HEAL", 10))
	seed := envUint(t, "CHAOS_SEED", 1)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	i := slices.IndexFunc(faults, func(f fault) bool { return f.name == "leader-after-heal" })
	runChaos(t, seed, rng, slices.Repeat([]fault{faults[i]}, n))
}

// runChaos runs a schedule of faults on one lab and checks the whole run
// at the end (TestChaos).
func runChaos(t *testing.T, seed uint64, rng *rand.Rand, schedule []fault) {
	t.Logf("chaos: seed %d, %d rounds: %s (replay: make chaos CHAOS_SEED=%d CHAOS_ROUNDS=%d)",
		seed, len(schedule), strings.Join(names(schedule), ", "), seed, len(schedule))

	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, netns: true, tune: func(c *config.Config) {
		c.Synchronous = true
		c.Events.MaxCount = 100000 // the decision check reads the whole record
	}})
	s.probe.check(t)
	var summary []string
	for i, f := range schedule {
		ok := t.Run(fmt.Sprintf("%02d-%s", i+1, f.name), func(t *testing.T) {
			r := s.newRound(t, rng)
			start := time.Now()
			f.run(r)
			r.converge(f.minPromotions, f.maxPromotions)
			line := fmt.Sprintf("%s: %d promotion(s), %s in all, longest write gap %s", f.name, r.promotions,
				time.Since(start).Round(100*time.Millisecond), s.writer.longestGap(start, time.Now()).Round(10*time.Millisecond))
			if r.note != "" {
				line += ", " + r.note
			}
			summary = append(summary, fmt.Sprintf("%02d %s", i+1, line))
			t.Log(line)
		})
		if !ok {
			t.Fatalf("round %d (%s) failed: replay with CHAOS_SEED=%d CHAOS_FAULTS=%s", i+1, f.name, seed, strings.Join(names(schedule[:i+1]), ","))
		}
	}
	t.Log("rounds:\n" + strings.Join(summary, "\n"))

	s.writer.stop()
	acked := s.writer.ackedIDs()
	v := s.waitHealthy(60 * time.Second)
	primary := primaryName(v)
	var standbys []string
	for _, n := range s.lab.DataNodes() {
		if n.Name != primary {
			standbys = append(standbys, n.Name)
		}
	}
	s.waitCaughtUp(primary, standbys...)
	for _, n := range s.lab.DataNodes() {
		s.assertHas(n.Name, acked)
	}
	s.checkDecisions(t, "witness", v.Term)
}

// fault is one kind of chaos with the promotions a correct system may make.
type fault struct {
	name                         string
	minPromotions, maxPromotions uint64
	run                          func(r *round)
}

var faults = []fault{
	{"host-kill", 1, 1, func(r *round) {
		r.s.lab.KillHost(r.s.node(r.primary))
		r.waitNewPrimary()
		r.pause(0, 3*time.Second)
	}},
	// Every process of the primary's host stopped for a seeded 8–14 s and
	// resumed, both in random orders, with a writer straight on the old
	// primary: a standby is promoted, and the thawed old primary
	// acknowledges nothing sent after the freeze (the lease gate).
	{"frozen-host", 1, 1, (*round).frozenHost},
	{"pg-kill", 0, 1, func(r *round) {
		r.s.lab.KillPostgres(r.s.node(r.primary))
		r.pause(5*time.Second, 10*time.Second)
	}},
	{"sidecar-kill", 0, 1, func(r *round) {
		r.s.lab.KillSidecar(r.s.node(r.primary))
		r.pause(0, 8*time.Second)
		r.s.start(r.primary)
	}},
	{"isolate-primary", 1, 1, func(r *round) {
		r.must(r.net().Partition(r.primary, r.others()...))
		r.waitNewPrimary()
		r.pause(0, 3*time.Second)
	}},
	{"inbound-drop", 1, 1, func(r *round) {
		// Asymmetric: the primary's packets reach its peers, nothing
		// comes back (CHAOS.md leader-primary-inbound-drop when it also
		// leads Raft).
		r.t.Logf("raft leader %s, primary %s", r.raftLeader, r.primary)
		r.must(r.net().PartitionInbound(r.primary, r.others()...))
		r.waitNewPrimary()
		r.pause(0, 3*time.Second)
	}},
	{"flapping", 0, 1, func(r *round) {
		until := time.Now().Add(12 * time.Second)
		for time.Now().Before(until) {
			r.must(r.net().Partition(r.primary, r.others()...))
			r.pause(time.Second, 3*time.Second)
			r.must(r.net().Heal(r.primary))
			r.pause(time.Second, 3*time.Second)
		}
	}},
	{"lossy-primary", 0, 1, func(r *round) {
		pct := 20 + r.rng.IntN(21)
		r.t.Logf("%d%% loss on %s's links to its peers", pct, r.primary)
		r.must(r.net().Loss(r.primary, pct, r.others()...))
		r.pause(15*time.Second, 15*time.Second)
	}},
	{"slow-primary", 0, 1, func(r *round) {
		rate := []string{"256kbit", "1mbit"}[r.rng.IntN(2)]
		r.t.Logf("%s's link limited to %s both ways", r.primary, rate)
		r.must(r.net().Slow(r.primary, rate))
		r.pause(15*time.Second, 15*time.Second)
	}},
	{"lagging-standby", 1, 1, func(r *round) {
		lag := r.standbys[r.rng.IntN(len(r.standbys))]
		wr := walReceiverPID(r.t, r.s.cluster, lag)
		r.must(syscall.Kill(wr, syscall.SIGSTOP))
		r.cont = append(r.cont, wr)
		r.t.Logf("%s's WAL receiver (pid %d) stopped", lag, wr)
		r.pause(2*time.Second, 4*time.Second)
		r.s.lab.KillHost(r.s.node(r.primary))
		if np := r.waitNewPrimary(); np == lag {
			r.t.Errorf("the lagging standby %s was promoted", lag)
		}
	}},
	{"standby-kill", 0, 0, func(r *round) {
		sb := r.standbys[r.rng.IntN(len(r.standbys))]
		r.s.lab.KillHost(r.s.node(sb))
		r.pause(3*time.Second, 10*time.Second)
	}},
	{"witness-kill", 0, 0, func(r *round) {
		r.t.Logf("raft leader %s", r.raftLeader)
		r.s.lab.KillHost(r.s.node("witness"))
		r.pause(2*time.Second, 6*time.Second)
	}},
	{"leader-kill", 0, 0, func(r *round) {
		// The Raft leader's host dies (the witness's when the primary
		// leads): the survivors elect another leader and the primary
		// renews its lease with it before the lease runs out.
		victim := r.raftLeader
		if victim == r.primary || victim == "" {
			victim = "witness"
		}
		r.t.Logf("killing %s (raft leader %s)", victim, r.raftLeader)
		r.s.lab.KillHost(r.s.node(victim))
		r.pause(2*time.Second, 6*time.Second)
	}},
	// A standby isolated and healed, an election right after (the healed
	// node often wins), then the Raft leader killed: no promotion, no
	// fence (the fencing issue's needless failover).
	{"leader-after-heal", 0, 0, (*round).leaderAfterHeal},
	{"switchover", 1, 1, func(r *round) {
		to := r.standbys[r.rng.IntN(len(r.standbys))]
		out, errOut, code := r.s.cli("switchover", "--addr", r.s.node("witness").GRPCAddr(), "--to", to)
		if code != 0 {
			r.t.Fatalf("switchover to %s: exit %d\n%s%s", to, code, out, errOut)
		}
	}},
}

func names(fs []fault) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.name)
	}
	return out
}

// chaosSchedule is CHAOS_FAULTS when given, else rounds faults drawn by the
// seed: every fault once, in seeded order, before any repeats.
func chaosSchedule(t *testing.T, rng *rand.Rand, rounds int) []fault {
	if env := os.Getenv("CHAOS_FAULTS"); env != "" {
		var out []fault
		for _, name := range strings.Split(env, ",") {
			i := slices.IndexFunc(faults, func(f fault) bool { return f.name == strings.TrimSpace(name) })
			if i < 0 {
				t.Fatalf("CHAOS_FAULTS: no fault %q (have %s)", name, strings.Join(names(faults), ", "))
			}
			out = append(out, faults[i])
		}
		return out
	}
	var out []fault
	for len(out) < rounds {
		for _, i := range rng.Perm(len(faults)) {
			if len(out) < rounds {
				out = append(out, faults[i])
			}
		}
	}
	return out
}

func envUint(t *testing.T, key string, def uint64) uint64 {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

// round is one fault on a converged cluster.
type round struct {
	t          *testing.T
	s          *started
	rng        *rand.Rand
	primary    string
	standbys   []string
	raftLeader string
	term       uint64
	probe      *prober
	cont       []int // pids to SIGCONT at the heal
	promotions uint64
	note       string // what the fault adds to the round's summary line
}

// newRound waits until the cluster is healthy with every standby in the
// synchronous set (so that a fault meets the full set, not a leftover of
// the last round), then starts a prober of its own.
func (s *started) newRound(t *testing.T, rng *rand.Rand) *round {
	t.Helper()
	// The cluster helpers fail the test they hold: give them the round's.
	s = &started{cluster: &cluster{t: t, lab: s.lab}, primary: s.primary, probe: s.probe, writer: s.writer}
	r := &round{t: t, s: s, rng: rng}
	var v *pb.ShowResponse
	eventually(t, 60*time.Second, "healthy, every standby in the synchronous set", func() string {
		var err error
		if v, err = s.show(""); err != nil {
			return err.Error()
		}
		if ok, why := s.lab.Healthy(v); !ok {
			return why
		}
		for _, n := range v.Nodes {
			if n.Kind == pb.NodeKind_NODE_KIND_DATA && n.Role == pb.NodeRole_NODE_ROLE_STANDBY && !n.SyncStandby {
				return n.Name + " not in the synchronous set"
			}
		}
		return ""
	})
	r.primary, r.term, r.raftLeader = primaryName(v), v.Term, v.RaftLeader
	for _, n := range s.lab.DataNodes() {
		if n.Name != r.primary {
			r.standbys = append(r.standbys, n.Name)
		}
	}
	r.probe = s.startProber(r.primary)
	t.Logf("primary %s (term %d), raft leader %s", r.primary, r.term, r.raftLeader)
	return r
}

func (r *round) net() *lab.Net { return r.s.lab.Spec.Net }

// others are every member but the primary (the client keeps its link).
func (r *round) others() []string {
	var out []string
	for _, n := range r.s.lab.Nodes {
		if n.Name != r.primary {
			out = append(out, n.Name)
		}
	}
	return out
}

func (r *round) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

// pause sleeps a seeded time in [lo, hi].
func (r *round) pause(lo, hi time.Duration) {
	d := lo
	if hi > lo {
		d += time.Duration(r.rng.Int64N(int64(hi - lo)))
	}
	time.Sleep(d)
}

func (r *round) waitNewPrimary() string {
	r.t.Helper()
	at := time.Now()
	np := r.s.waitNewPrimary(r.primary, 60*time.Second)
	r.t.Logf("%s writable %s after the fault", np, time.Since(at).Round(10*time.Millisecond))
	return np
}

// converge heals every fault, restarts what is down, waits for one primary
// with every standby streaming from it on its timeline and checks the
// round's invariants.
func (r *round) converge(minP, maxP uint64) {
	t := r.t
	t.Helper()
	for _, pid := range r.cont {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	for _, n := range r.s.lab.Nodes {
		r.must(r.net().Heal(n.Name))
		r.must(r.net().Fast(n.Name))
	}
	for _, n := range r.s.lab.Nodes {
		if n.PID() == 0 {
			r.s.start(n.Name)
		}
	}
	v := r.s.waitHealthy(120 * time.Second)
	primary := primaryName(v)
	var tli uint32
	for _, n := range v.Nodes {
		if n.Name == primary {
			tli = n.Timeline
		}
	}
	for _, n := range r.s.lab.DataNodes() {
		if n.Name != primary {
			r.s.followsOn(n.Name, primary, tli, 60*time.Second)
		}
	}
	r.promotions = v.Term - r.term
	if r.promotions < minP || r.promotions > maxP {
		t.Errorf("%d promotions (term %d → %d), want %d to %d", r.promotions, r.term, v.Term, minP, maxP)
	}
	r.probe.check(t)
	// The views above come from sidecar reports up to a few monitor
	// intervals old: wait until the primary really takes writes.
	eventually(t, 30*time.Second, primary+" writable", func() string {
		n, err := r.s.queryInt(primary, "SELECT CASE WHEN pg_is_in_recovery() THEN 0 ELSE 1 END")
		switch {
		case err != nil:
			return err.Error()
		case n != 1:
			return "in recovery"
		}
		return ""
	})
	r.s.assertHas(primary, r.s.writer.ackedIDs())
}

// leaderAfterHeal is the fault of the fencing issue's needless failover:
// a standby is cut from every peer (both ways) for a seeded 15–20 s and
// healed; once it streams again and its sidecar has caught up with the
// Raft log, the Raft leader is cut from its peers until another is
// elected (there is no leadership-transfer verb; cutting rather than
// killing it keeps four voters for the kill that follows), so the election
// falls while the healed standby's peer connections are fresh from their
// backoff. Then the new leader's host dies (the witness's when the primary
// leads, as in leader-kill). The primary must renew its lease with the
// leader after that one: no promotion (converge), no fence, writes go on.
func (r *round) leaderAfterHeal() {
	t := r.t
	sb := r.standbys[r.rng.IntN(len(r.standbys))]
	fences := r.fenceCount()
	iso := 15*time.Second + time.Duration(r.rng.Int64N(int64(5*time.Second)))
	t.Logf("isolating %s from %s for %s (raft leader %s)", sb, strings.Join(r.peersOf(sb), ", "), iso.Round(100*time.Millisecond), r.raftLeader)
	r.must(r.net().Partition(sb, r.peersOf(sb)...))
	time.Sleep(iso)
	r.must(r.net().Heal(sb))
	healed := time.Now()
	v := r.view(r.primary)
	tli := nodeView(v, r.primary).GetTimeline()
	r.s.followsOn(sb, r.primary, tli, 60*time.Second)
	// Its sidecar follows Raft again: it knows a leader and has applied
	// what the primary had at the heal.
	conn, err := r.s.lab.Dial(r.s.node(sb).GRPCAddr())
	r.must(err)
	defer func() { _ = conn.Close() }()
	eventually(t, 30*time.Second, sb+" back in raft", func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := pb.NewNodeServiceClient(conn).Status(ctx, &pb.StatusRequest{})
		switch {
		case err != nil:
			return err.Error()
		case st.RaftState != "Follower" && st.RaftState != "Leader":
			return "raft state " + st.RaftState
		case st.RaftLeader == "":
			return "no raft leader"
		case st.AppliedIndex < v.AppliedIndex:
			return fmt.Sprintf("applied %d < %d", st.AppliedIndex, v.AppliedIndex)
		}
		return ""
	})
	back := time.Since(healed)
	first := r.view(r.primary).RaftLeader
	elected := first
	switch first {
	case sb:
		t.Logf("%s back %s after the heal, already the raft leader", sb, back.Round(10*time.Millisecond))
	case r.primary, "":
		t.Logf("%s back %s after the heal; raft leader %q: no forced election", sb, back.Round(10*time.Millisecond), first)
	default:
		r.must(r.net().Partition(first, r.peersOf(first)...))
		cut := time.Now()
		eventually(t, 20*time.Second, "a raft leader other than "+first, func() string {
			w, err := r.s.show(r.primary)
			if err != nil {
				return err.Error()
			}
			if elected = w.RaftLeader; elected == "" || elected == first {
				return fmt.Sprintf("raft leader %q", elected)
			}
			return ""
		})
		r.must(r.net().Heal(first))
		t.Logf("%s back %s after the heal; %s cut from its peers: %s elected %s later", sb, back.Round(10*time.Millisecond),
			first, elected, time.Since(cut).Round(10*time.Millisecond))
	}
	r.pause(0, 2*time.Second)
	leader := r.view(r.primary).RaftLeader
	victim := leader
	if victim == r.primary || victim == "" {
		victim = "witness"
	}
	t.Logf("killing %s (raft leader %s, elected after the heal: %s)", victim, leader, elected)
	r.s.lab.KillHost(r.s.node(victim))
	killed := time.Now()
	r.pause(2*time.Second, 6*time.Second)
	// Writes go on: one acknowledged after the kill.
	eventually(t, 15*time.Second, "a write acknowledged after the kill", func() string {
		if r.s.writer.lastAck().After(killed) {
			return ""
		}
		return "none yet"
	})
	gap := r.s.writer.longestGap(killed, time.Now())
	if n := r.fenceCount(); n != fences {
		t.Errorf("the primary %s fenced Postgres %d time(s) in the round (isolation, election or the kill of %s)", r.primary, n-fences, victim)
	}
	r.note = fmt.Sprintf("isolated %s %s, elected %s, killed %s, fences %d, write gap after the kill %s",
		sb, iso.Round(100*time.Millisecond), elected, victim, r.fenceCount()-fences, gap.Round(10*time.Millisecond))
}

func (r *round) frozenHost() {
	old := r.primary
	dw := r.s.startDirectWriter(old, 2)
	time.Sleep(time.Second)
	f := freezeHost(r.s.cluster, old, r.rng.Shuffle)
	defer f.thaw()
	np := r.waitNewPrimary()
	promotedAt := time.Now()
	frozen := 8*time.Second + time.Duration(r.rng.Int64N(int64(6*time.Second)))
	if wait := frozen - time.Since(f.at); wait > 0 {
		time.Sleep(wait)
	}
	dw.markThaw()
	f.thaw()
	// The old primary is fenced by its gate or demoted by its sidecar, then
	// follows the new primary (converge checks it on the new timeline).
	tli := nodeView(r.view(np), np).GetTimeline()
	r.s.followsOn(old, np, tli, 90*time.Second)
	dw.stop()
	dw.check(r.t, f.at, promotedAt, np, false) // the chaos lab is synchronous
	r.note = fmt.Sprintf("frozen %s, %s promoted %s after the freeze", frozen.Round(100*time.Millisecond), np,
		promotedAt.Sub(f.at).Round(10*time.Millisecond))
}

// peersOf are every member but node.
func (r *round) peersOf(node string) []string {
	var out []string
	for _, n := range r.s.lab.Nodes {
		if n.Name != node {
			out = append(out, n.Name)
		}
	}
	return out
}

// view is cluster show as the named member answers it.
func (r *round) view(name string) *pb.ShowResponse {
	r.t.Helper()
	v, err := r.s.show(name)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

func nodeView(v *pb.ShowResponse, name string) *pb.NodeView {
	for _, n := range v.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// fenceCount is how often the round's primary's sidecar has fenced its
// Postgres (its log; the fence event is proposed after the fact and may
// not make it).
func (r *round) fenceCount() int {
	b, err := os.ReadFile(r.s.node(r.primary).LogPath)
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.Count(string(b), "fencing postgres")
}

// checkDecisions checks the decision record of the cluster as one member
// holds it (decisionViolations).
func (c *cluster) checkDecisions(t *testing.T, via string, term uint64) {
	t.Helper()
	var decisions []*pb.Event
	decisions = append(decisions, c.events(via, fsm.EventFailover)...)
	decisions = append(decisions, c.events(via, fsm.EventSwitchover)...)
	promotions := c.events(via, fsm.EventStandbyPromote)
	summary, problems := decisionViolations(decisions, promotions, term)
	for _, p := range problems {
		t.Error(p)
	}
	t.Log("decision record: " + summary)
}

// decisionViolations is CHAOS.md checker 4 on a decision record: the
// committed decisions (ok failover and switchover events) have strictly
// increasing terms, one per term, the last one the current term; every
// promotion a sidecar performed (ok standby_promote) names a committed
// decision for that node in that term, at most one per term, and every
// decision was carried out. Tested on fabricated records in
// checkers_test.go.
func decisionViolations(decisions, promotions []*pb.Event, term uint64) (summary string, problems []string) {
	decided := map[uint64]string{}
	var last uint64 = 1
	sorted := slices.Clone(decisions)
	slices.SortFunc(sorted, func(a, b *pb.Event) int { return cmp.Compare(a.Index, b.Index) })
	for _, e := range sorted {
		if !e.Ok {
			continue // a rollback, or a refused or failed attempt
		}
		if e.Term <= last {
			problems = append(problems, fmt.Sprintf("decision %q at index %d in term %d, after term %d", e.Details, e.Index, e.Term, last))
		}
		last = max(last, e.Term)
		decided[e.Term] = e.NodeName
	}
	promoted := map[uint64]string{}
	for _, e := range promotions {
		if !e.Ok {
			continue
		}
		if who, ok := decided[e.Term]; !ok || who != e.NodeName {
			problems = append(problems, fmt.Sprintf("%s promoted in term %d without a committed decision naming it (decisions %v)", e.NodeName, e.Term, decided))
		}
		if prev, ok := promoted[e.Term]; ok {
			problems = append(problems, fmt.Sprintf("two promotions in term %d: %s and %s", e.Term, prev, e.NodeName))
		}
		promoted[e.Term] = e.NodeName
	}
	for _, tm := range slices.Sorted(maps.Keys(decided)) {
		if who := decided[tm]; promoted[tm] != who {
			problems = append(problems, fmt.Sprintf("the decision to promote %s in term %d was never carried out", who, tm))
		}
	}
	if last != term {
		problems = append(problems, fmt.Sprintf("the last decision is in term %d, the cluster is in term %d", last, term))
	}
	return fmt.Sprintf("%d committed decisions, %d promotions, terms up to %d", len(decided), len(promoted), last), problems
}
