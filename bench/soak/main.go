// Command soak runs one lab under load for a long time with faults that
// must not cause a failover — Raft-leader kills and standby kills, never a
// primary fault — and counts what should not happen: failovers,
// promotions, fencings, failed INSERTs. It is how a default timing is
// judged safe (issue 14: timing.lease 2s with raft.heartbeat_timeout
// 250ms). It prints numbers and exits 1 when any false failover or fencing
// happened; it asserts nothing about speed.
//
//	make soak SOAK_DURATION=30m BENCH_ARGS='-lease 2s -raft 250ms'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
)

type options struct {
	bin        string
	duration   time.Duration
	every      time.Duration
	down       time.Duration
	lease      time.Duration
	raft       time.Duration
	clients    int
	pgbenchBin string
	seed       int64
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/hasidecar", "the hasidecar binary to run in the lab")
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to soak")
	flag.DurationVar(&o.every, "every", 3*time.Minute, "a fault this often (alternately: the Raft leader's sidecar killed, a standby's host killed)")
	flag.DurationVar(&o.down, "down", 15*time.Second, "how long a killed node stays down before it is started again")
	flag.DurationVar(&o.lease, "lease", 0, "timing.lease on every node (0: the default)")
	flag.DurationVar(&o.raft, "raft", 0, "raft.heartbeat_timeout and raft.election_timeout on every node (0: the defaults)")
	flag.IntVar(&o.clients, "pgbench", 8, "pgbench clients on the primary for the whole run (-j 2: both cores saturated)")
	flag.StringVar(&o.pgbenchBin, "pgbench-bin", "/usr/lib/postgresql/15/bin/pgbench", "the pgbench binary")
	flag.Int64Var(&o.seed, "seed", 0, "seed of the standby choice (0: from the clock; printed)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "soak: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano() % 1_000_000_000
	}
	var err error
	if o.bin, err = benchkit.AbsBinary(o.bin); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	benchkit.Main("soak", func(ctx context.Context) error { return run(ctx, o) })
}

// result is what the run counts.
type result struct {
	faults                   []string
	failovers, promotions    int
	fences, termBefore, term uint64
	ok, failed               int
	longestGap               time.Duration
	tps                      string
	pgbenchErr               string
}

func run(ctx context.Context, o options) error {
	fmt.Printf("soak: %s for %s on %d CPUs: pgbench -c %d -j 2 and a one-connection INSERT writer on the primary; a fault every %s (Raft leader's sidecar, then a standby's host; each down %s); no primary fault; lease %s, raft %s; seed %d\n\n",
		o.bin, o.duration, runtime.NumCPU(), o.clients, o.every, o.down, orDefault(o.lease, config.DefaultLease.D()), orDefault(o.raft, config.DefaultHeartbeatTimeout.D()), o.seed)
	env, err := benchkit.StartLab(ctx, benchkit.LabOptions{Binary: o.bin, Standbys: 2, Witness: true, Attempts: 2, Tune: func(cfg *config.Config) {
		if o.lease > 0 {
			cfg.Timing.Lease = config.Duration(o.lease)
		}
		if o.raft > 0 {
			cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = config.Duration(o.raft), config.Duration(o.raft)
		}
	}})
	if err != nil {
		return err
	}
	defer env.Close()
	v, p, w, err := env.StartWriting(ctx, "", benchkit.WriterOptions{})
	if err != nil {
		return err
	}
	defer w.Stop()
	res := &result{termBefore: v.Term}
	applied := v.AppliedIndex
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(p.PGPort), "-U", "postgres"}
	if out, err := exec.CommandContext(ctx, o.pgbenchBin, append(append([]string{"-i", "-q", "-s", "4"}, conn...), "postgres")...).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w: %s", err, out)
	}
	bench := exec.CommandContext(ctx, o.pgbenchBin, append(append([]string{"-n", "-c", strconv.Itoa(o.clients), "-j", "2", "-T", strconv.Itoa(int(o.duration.Seconds()))}, conn...), "postgres")...)
	var benchOut strings.Builder
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		return fmt.Errorf("start pgbench: %w", err)
	}
	benchkit.Logf("primary %s, raft leader %s, term %d: pgbench and the writer running", p.Name, v.RaftLeader, v.Term)
	rng := rand.New(rand.NewPCG(uint64(o.seed), 0))
	start := time.Now()
	end := start.Add(o.duration)
	for i := 0; time.Until(end) > o.every; i++ {
		if err := benchkit.Sleep(ctx, o.every-o.down); err != nil {
			return err
		}
		f, err := fault(ctx, env, i, rng, o.down)
		if err != nil {
			benchkit.Logf("fault %d: %v", i+1, err)
			continue
		}
		res.faults = append(res.faults, f)
		benchkit.Logf("fault %d: %s", i+1, f)
	}
	if err := benchkit.Sleep(ctx, time.Until(end)); err != nil {
		return err
	}
	if err := bench.Wait(); err != nil {
		res.pgbenchErr = err.Error()
	}
	if m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindStringSubmatch(benchOut.String()); m != nil {
		res.tps = m[1]
	}
	w.Stop()
	res.ok, res.failed = w.Counts()
	if g, err := benchkit.LongestGap(w.Samples()); err == nil {
		res.longestGap = g.Length
	}
	for typ, n := range map[string]*int{fsm.EventFailover: &res.failovers, fsm.EventStandbyPromote: &res.promotions} {
		evs, err := env.Events(ctx, typ, applied)
		if err != nil {
			return err
		}
		*n = len(evs)
	}
	fences, err := env.Events(ctx, fsm.EventFence, applied)
	if err != nil {
		return err
	}
	res.fences = uint64(len(fences))
	if v, err := env.Show(ctx); err == nil {
		res.term = v.Term
	}
	fmt.Printf("\nsoak %s: %d fault(s) (%s)\n", o.duration, len(res.faults), strings.Join(res.faults, "; "))
	fmt.Printf("false failovers %d, promotions %d, fencings %d, term %d -> %d\n", res.failovers, res.promotions, res.fences, res.termBefore, res.term)
	fmt.Printf("writer: %d INSERTs acknowledged, %d failed, longest gap %s; pgbench -c %d: tps %s%s\n", res.ok, res.failed, res.longestGap.Round(time.Millisecond), o.clients, orNone(res.tps), errNote(res.pgbenchErr))
	if res.failovers+res.promotions > 0 || res.fences > 0 {
		return errors.New("false failovers or fencings happened: these timings are not safe here")
	}
	return nil
}

// fault i kills the Raft leader's sidecar (even i) or a standby's host (odd
// i), never the primary, and starts it again after down.
func fault(ctx context.Context, env *benchkit.Env, i int, rng *rand.Rand, down time.Duration) (string, error) {
	v, err := env.Show(ctx)
	if err != nil {
		return "", err
	}
	p := env.Primary(v)
	if p == nil {
		return "", errors.New("no primary")
	}
	var victim *lab.Node
	what := ""
	if i%2 == 0 {
		victim = env.Lab.Node(v.RaftLeader)
		what = "raft leader"
		if victim == nil || victim == p {
			return "", fmt.Errorf("the raft leader is %q, the primary's sidecar: not killed (no primary fault)", v.RaftLeader)
		}
		env.Lab.KillSidecar(victim)
	} else {
		var standbys []*lab.Node
		for _, n := range env.Lab.DataNodes() {
			if n != p {
				standbys = append(standbys, n)
			}
		}
		sort.Slice(standbys, func(a, b int) bool { return standbys[a].Name < standbys[b].Name })
		victim = standbys[rng.IntN(len(standbys))]
		what = "standby host"
		env.Lab.KillHost(victim)
	}
	if err := benchkit.Sleep(ctx, down); err != nil {
		return "", err
	}
	if err := env.Lab.Start(victim); err != nil {
		return "", fmt.Errorf("start %s again: %w", victim.Name, err)
	}
	return fmt.Sprintf("%s %s killed at %s, back after %s", what, victim.Name, time.Now().Add(-down).Format("15:04:05"), down), nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func orNone(s string) string {
	if s == "" {
		return "(none reported)"
	}
	return s
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (pgbench: " + s + ")"
}
