package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// trialResult is one kill trial.
type trialResult struct {
	Config string `json:"config"`
	Trial  int    `json:"trial"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`

	// FailoverS: kill -> completion of the first INSERT on another node.
	FailoverS float64 `json:"failover_s,omitempty"`
	// DecisionS: kill -> the failover event's timestamp (the Raft leader
	// committed the promotion); PromotedS: kill -> the standby_promote
	// event (the new primary's sidecar finished pg_ctl promote). Both come
	// from the proposers' wall clocks, all on this machine.
	DecisionS float64 `json:"decision_s,omitempty"`
	PromotedS float64 `json:"promoted_s,omitempty"`

	// JitterS: the random part of the warm-up (-jitter).
	JitterS float64 `json:"jitter_s,omitempty"`
	// KillCallS is how long KillHost itself took (t0 is taken before it).
	KillCallS float64 `json:"kill_call_s"`

	Killed              string `json:"killed"`
	RaftLeaderBefore    string `json:"raft_leader_before"`
	KilledWasRaftLeader bool   `json:"killed_was_raft_leader"`
	RaftLeaderAfter     string `json:"raft_leader_after,omitempty"`
	Promoted            string `json:"promoted,omitempty"`
	PrimaryAfter        string `json:"primary_after,omitempty"`
	TermBefore          uint64 `json:"term_before"`
	TermAfter           uint64 `json:"term_after,omitempty"`
	// FailoverEvents counts `failover` events recorded after the kill;
	// WritersAfterKill the other nodes that accepted INSERTs after it.
	FailoverEvents   int      `json:"failover_events"`
	PromoteEvents    int      `json:"standby_promote_events"`
	WritersAfterKill []string `json:"writers_after_kill,omitempty"`
	// OldPrimaryAcks counts INSERTs on the killed node whose reply was read
	// after t0 (an INSERT in flight at the kill); OldPrimaryLastAckS is the
	// last one's time after t0, which should be a few milliseconds at most.
	OldPrimaryAcks     int     `json:"old_primary_acks_after_kill"`
	OldPrimaryLastAckS float64 `json:"old_primary_last_ack_s,omitempty"`
	InsertsOK          int     `json:"inserts_ok"`
	InsertsFailed      int     `json:"inserts_failed"`
	LabDir             string  `json:"lab_dir,omitempty"`
	// LabStartFailures are labs that did not come up before this trial's.
	LabStartFailures []string `json:"lab_start_failures,omitempty"`

	failover time.Duration
}

func (r trialResult) line(trials int) string {
	head := fmt.Sprintf("%-10s trial %d/%d", r.Config, r.Trial, trials)
	if !r.OK {
		s := head + "  FAILED: " + r.Error
		if r.LabDir != "" {
			s += " (lab kept in " + r.LabDir + ")"
		}
		return s
	}
	leader := "no"
	if r.KilledWasRaftLeader {
		leader = "yes"
	}
	s := fmt.Sprintf("%s  failover %6.3f s  killed %s (raft leader: %s)  promoted %s  [decided +%.3f s, promoted +%.3f s, failover events %d, writers after kill %s]",
		head, r.FailoverS, r.Killed, leader, r.Promoted, r.DecisionS, r.PromotedS, r.FailoverEvents, strings.Join(r.WritersAfterKill, ","))
	if r.FailoverEvents != 1 || len(r.WritersAfterKill) != 1 || r.PrimaryAfter != r.Promoted {
		s += fmt.Sprintf("  NOTE: expected one promotion of one node; primary now %q", r.PrimaryAfter)
	}
	if len(r.LabStartFailures) > 0 {
		s += fmt.Sprintf("  NOTE: %d lab start(s) failed before this one", len(r.LabStartFailures))
	}
	if r.OldPrimaryLastAckS > 0.1 {
		s += fmt.Sprintf("  NOTE: the killed node acknowledged an INSERT %.3f s after the kill", r.OldPrimaryLastAckS)
	}
	return s
}

// runTrial runs one kill trial on a fresh lab, which it always tears down.
func runTrial(ctx context.Context, o options, c labConfig, trial int) (r trialResult) {
	r = trialResult{Config: c.Name, Trial: trial}
	env, err := benchkit.StartLab(ctx, o.labOptions(c))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer env.Close()
	if o.logs != "" {
		defer env.CopyLogs(filepath.Join(o.logs, fmt.Sprintf("%s-%d", c.Name, trial)))
	}
	r.LabStartFailures = env.StartFailures
	if o.jitter {
		rng := rand.New(rand.NewPCG(uint64(o.seed), uint64(trial)<<32|uint64(len(c.Name))))
		r.JitterS = benchkit.Seconds(time.Duration(rng.Int64N(int64(c.lease() / config.RenewalsPerLease))))
	}
	if err := measure(ctx, o, env, &r); err != nil {
		r.OK, r.Error = false, err.Error()
		if ctx.Err() == nil {
			env.MarkFailed()
			env.DumpLogs(25)
			if o.keep {
				r.LabDir = env.Lab.Spec.Dir
			}
		}
		return r
	}
	r.OK = true
	return r
}

func measure(ctx context.Context, o options, env *benchkit.Env, r *trialResult) error {
	_, _, w, err := env.StartWriting(ctx, o.dsnExtra, benchkit.WriterOptions{Rate: o.rate, StatementTimeout: o.stmtTimeout})
	if err != nil {
		return err
	}
	defer w.Stop()
	if o.pgbench > 0 {
		stop, err := startPgbench(ctx, o, env)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := benchkit.Sleep(ctx, o.warmup+time.Duration(r.JitterS*float64(time.Second))); err != nil {
		return err
	}
	if n, _ := w.Counts(); n == 0 {
		return fmt.Errorf("no INSERT succeeded during the %s warm-up: %s", o.warmup, lastFailure(w))
	}

	// A fresh view right before the kill: who is primary, who leads Raft.
	v, err := env.Show(ctx)
	if err != nil {
		return err
	}
	p := env.Primary(v)
	if p == nil {
		return errors.New("cluster show names no primary before the kill")
	}
	r.Killed, r.RaftLeaderBefore, r.TermBefore = p.Name, v.RaftLeader, v.Term
	r.KilledWasRaftLeader = v.RaftLeader == p.Name
	applied := v.AppliedIndex
	if s := w.Samples(); s[len(s)-1].Port != p.PGPort {
		return fmt.Errorf("the writer writes to %s but cluster show names %s primary", env.NameByPort(s[len(s)-1].Port), p.Name)
	}
	okBefore, failedBefore := w.Counts()

	t0 := time.Now()
	if o.net == netBlackhole {
		// Frozen at once (nft takes a while on a loaded machine), then the
		// network, so that nothing the dying processes' sockets send (FIN,
		// RST) reaches anyone, then the kill.
		env.Lab.FreezeHost(p)
		if err := env.Lab.Spec.Net.Blackhole(p.Name); err != nil {
			return fmt.Errorf("blackhole %s: %w", p.Name, err)
		}
	}
	env.Lab.KillHost(p)
	r.KillCallS = benchkit.Seconds(time.Since(t0))
	benchkit.Logf("%s: trial %d: killed %s (raft leader %s, term %d)", r.Config, r.Trial, p.Name, v.RaftLeader, v.Term)

	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	first, err := w.WaitFor(wctx, t0, func(s benchkit.Sample) bool { return s.Port != p.PGPort })
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no INSERT succeeded on another node within %s of the kill (last writer error: %s; cluster: %s)",
			o.timeout, lastFailure(w), describe(ctx, env, p))
	}
	r.failover = first.At.Sub(t0)
	r.FailoverS = benchkit.Seconds(r.failover)
	r.Promoted = env.NameByPort(first.Port)
	benchkit.Logf("%s: trial %d: first INSERT on %s after %s", r.Config, r.Trial, r.Promoted, benchkit.Secs(r.failover))

	// Keep writing a little: a second promotion or a flapping primary would
	// show up as another writer or another failover event.
	if err := benchkit.Sleep(ctx, o.settle); err != nil {
		return err
	}
	for _, s := range benchkit.Between(w.Samples(), t0, time.Now()) {
		if s.Port == p.PGPort {
			// Answered before the kill, its reply read just after it.
			r.OldPrimaryAcks++
			r.OldPrimaryLastAckS = benchkit.Seconds(s.At.Sub(t0))
		}
	}
	for _, port := range benchkit.DistinctPorts(benchkit.Between(w.Samples(), t0, time.Now())) {
		if port != p.PGPort {
			r.WritersAfterKill = append(r.WritersAfterKill, env.NameByPort(port))
		}
	}
	okNow, failedNow := w.Counts()
	r.InsertsOK, r.InsertsFailed = okNow-okBefore, failedNow-failedBefore

	if v, err = env.ShowExcept(ctx, p); err != nil {
		return fmt.Errorf("after the failover: %w", err)
	}
	r.TermAfter, r.RaftLeaderAfter = v.Term, v.RaftLeader
	if np := env.Primary(v); np != nil {
		r.PrimaryAfter = np.Name
	}
	fo, err := env.Events(ctx, fsm.EventFailover, applied, p)
	if err != nil {
		return fmt.Errorf("read the failover events: %w", err)
	}
	r.FailoverEvents = len(fo)
	if len(fo) > 0 {
		r.DecisionS = sinceMs(t0, fo[len(fo)-1]) // oldest: events come newest first
	}
	pr, err := env.Events(ctx, fsm.EventStandbyPromote, applied, p)
	if err != nil {
		return fmt.Errorf("read the standby_promote events: %w", err)
	}
	for i := len(pr) - 1; i >= 0; i-- {
		if pr[i].Ok {
			if r.PromoteEvents == 0 {
				r.PromotedS = sinceMs(t0, pr[i])
			}
			r.PromoteEvents++
		}
	}
	return nil
}

func sinceMs(t0 time.Time, ev *pb.Event) float64 {
	return float64(ev.TimestampUnixMs-t0.UnixMilli()) / 1000
}

func lastFailure(w *benchkit.Writer) string {
	f := w.Failures()
	if len(f) == 0 {
		return "none"
	}
	l := f[len(f)-1]
	return fmt.Sprintf("%s: %s (%d failures in all)", l.Op, l.Err, len(f))
}

// describe is a one-line picture of the cluster without the killed node.
func describe(ctx context.Context, env *benchkit.Env, killed *lab.Node) string {
	v, err := env.ShowExcept(ctx, killed)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, n := range v.Nodes {
		parts = append(parts, fmt.Sprintf("%s %s/%s", n.Name, strings.TrimPrefix(n.Role.String(), "NODE_ROLE_"), n.Status))
	}
	return fmt.Sprintf("term %d, raft leader %q, %s", v.Term, v.RaftLeader, strings.Join(parts, ", "))
}

// startPgbench loads pgbench's tables into the primary (scale 1) and runs
// pgbench -c o.pgbench -j 2 on it in the background, until the kill ends
// its connections or stop is called; its exit status is not looked at (it
// fails when the primary dies, on purpose).
func startPgbench(ctx context.Context, o options, env *benchkit.Env) (stop func(), err error) {
	v, err := env.Show(ctx)
	if err != nil {
		return nil, err
	}
	p := env.Primary(v)
	if p == nil {
		return nil, errors.New("pgbench: cluster show names no primary")
	}
	conn := []string{"-h", p.Host, "-p", strconv.Itoa(p.PGPort), "-U", "postgres"}
	if out, err := env.Command(ctx, append(append([]string{o.pgbenchBin, "-i", "-q", "-s", "1"}, conn...), "postgres")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i on %s: %w: %s", p.Name, err, out)
	}
	bctx, cancel := context.WithCancel(ctx)
	secs := int((o.warmup + o.timeout + o.settle).Seconds()) + 10
	cmd := env.Command(bctx, append(append([]string{o.pgbenchBin, "-n", "-c", strconv.Itoa(o.pgbench), "-j", strconv.Itoa(min(o.pgbench, 2)), "-T", strconv.Itoa(secs)}, conn...), "postgres")...)
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start pgbench on %s: %w", p.Name, err)
	}
	benchkit.Logf("pgbench -c %d -j %d running on %s", o.pgbench, min(o.pgbench, 2), p.Name)
	return func() { cancel(); _ = cmd.Wait() }, nil
}
