// Command gate measures what the lease gate (pgctl/gate.go) costs a
// primary's commits in asynchronous mode, with pgbench's default
// TPC-B-like script against the primary.
//
// The default mode (-mode same-lab) runs one lab with the gate and
// alternates short pgbench windows with and without waiting for it: a
// window without sets synchronous_commit=local for its sessions (through
// PGOPTIONS), which is exactly what a commit without the gate does (it
// flushes locally and waits for no synchronous standby), while the gate
// keeps streaming as it would. Alternating windows in one lab cancel the
// drift of a shared machine's load, which swamped lab-against-lab
// comparisons. -mode labs compares whole labs with and without the gate
// (postgres.disable_lease_gate), alternating.
//
// It prints measured numbers; it asserts nothing about speed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/lab"
)

type result struct {
	gate      bool
	tps, latM float64
}

func main() {
	bin := flag.String("bin", "bin/hasidecar", "the hasidecar binary to run in the lab")
	pgbench := flag.String("pgbench", "/usr/lib/postgresql/15/bin/pgbench", "the pgbench binary")
	mode := flag.String("mode", "same-lab", "same-lab (one lab, windows with and without waiting for the gate, alternating) or labs (whole labs with and without the gate, alternating)")
	rounds := flag.Int("rounds", 6, "pairs of windows (same-lab) or pairs of labs (labs)")
	clients := flag.Int("c", 4, "pgbench -c")
	threads := flag.Int("j", 2, "pgbench -j")
	secs := flag.Int("T", 5, "pgbench -T of one window (same-lab) or one lab's run (labs)")
	scale := flag.Int("s", 4, "pgbench -i -s")
	flag.Parse()
	b := bencher{pgbench: *pgbench, c: *clients, j: *threads, secs: *secs, scale: *scale}
	benchkit.Main("gate", func(ctx context.Context) error {
		var results []result
		var err error
		switch *mode {
		case "same-lab":
			results, err = b.sameLab(ctx, *bin, *rounds)
		case "labs":
			results, err = b.labs(ctx, *bin, *rounds)
		default:
			return fmt.Errorf("-mode %q: want same-lab or labs", *mode)
		}
		if err != nil {
			return err
		}
		summarize(results)
		return nil
	})
}

// summarize prints the mean and median of each side and the median of the
// paired latency differences (pair i: the i-th run of each side).
func summarize(results []result) {
	var with, without []result
	for _, r := range results {
		if r.gate {
			with = append(with, r)
		} else {
			without = append(without, r)
		}
	}
	for _, side := range []struct {
		name string
		rs   []result
	}{{"without", without}, {"with", with}} {
		var tps, lat []float64
		for _, r := range side.rs {
			tps, lat = append(tps, r.tps), append(lat, r.latM)
		}
		fmt.Printf("%-7s the gate: tps mean %.1f median %.1f; latency mean %.3f median %.3f ms (%d runs)\n",
			side.name, mean(tps), median(tps), mean(lat), median(lat), len(side.rs))
	}
	var diffs []float64
	for i := range min(len(with), len(without)) {
		diffs = append(diffs, with[i].latM-without[i].latM)
	}
	if len(diffs) > 0 {
		fmt.Printf("gate cost per transaction (paired): median %+.3f ms, min %+.3f, max %+.3f (%d pairs)\n",
			median(diffs), slices.Min(diffs), slices.Max(diffs), len(diffs))
	}
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type bencher struct {
	pgbench           string
	c, j, secs, scale int
}

// sameLab: one lab with the gate; rounds pairs of windows, the order
// within a pair alternating.
func (b bencher) sameLab(ctx context.Context, bin string, rounds int) ([]result, error) {
	e, p, err := b.start(ctx, bin, true)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	var out []result
	for r := 0; r < rounds; r++ {
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, gate := range order {
			res, err := b.run(ctx, p, gate)
			if err != nil {
				return nil, err
			}
			out = append(out, res)
			fmt.Printf("window %d gate=%-5v tps=%.1f latency_avg=%.3f ms\n", r+1, gate, res.tps, res.latM)
		}
	}
	return out, nil
}

// labs: a fresh lab per run, with and without the gate alternating.
func (b bencher) labs(ctx context.Context, bin string, rounds int) ([]result, error) {
	var out []result
	for r := 0; r < rounds; r++ {
		for _, gate := range []bool{false, true} {
			res, err := func() (result, error) {
				e, p, err := b.start(ctx, bin, gate)
				if err != nil {
					return result{}, err
				}
				defer e.Close()
				return b.run(ctx, p, true)
			}()
			if err != nil {
				return nil, err
			}
			res.gate = gate
			out = append(out, res)
			fmt.Printf("lab %d gate=%-5v tps=%.1f latency_avg=%.3f ms\n", r+1, gate, res.tps, res.latM)
		}
	}
	return out, nil
}

var (
	reTPS = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	reLat = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

// start brings up a lab (one standby and a witness) with or without the
// gate and loads pgbench's tables into its primary.
func (b bencher) start(ctx context.Context, bin string, gate bool) (*benchkit.Env, *lab.Node, error) {
	e, err := benchkit.StartLab(ctx, benchkit.LabOptions{Binary: bin, Standbys: 1, Witness: true, Attempts: 2,
		Tune: func(cfg *config.Config) {
			if cfg.Postgres != nil {
				cfg.Postgres.DisableLeaseGate = !gate
			}
		}})
	if err != nil {
		return nil, nil, err
	}
	v, err := e.Show(ctx)
	if err != nil {
		e.Close()
		return nil, nil, err
	}
	p := e.Primary(v)
	if p == nil {
		e.Close()
		return nil, nil, fmt.Errorf("no primary")
	}
	if err := e.ExecOn(ctx, p, "SELECT 1"); err != nil {
		e.Close()
		return nil, nil, err
	}
	out, err := exec.CommandContext(ctx, "psql", "-XAtc", "SHOW synchronous_standby_names", "-h", "127.0.0.1", "-p", strconv.Itoa(p.PGPort), "-U", "postgres", "postgres").CombinedOutput()
	if err != nil {
		e.Close()
		return nil, nil, fmt.Errorf("psql: %w: %s", err, out)
	}
	benchkit.Logf("gate=%v primary %s synchronous_standby_names=%q", gate, p.Name, strings.TrimSpace(string(out)))
	if out, err := exec.CommandContext(ctx, b.pgbench, append(append([]string{"-i", "-q", "-s", strconv.Itoa(b.scale)}, conn(p)...), "postgres")...).CombinedOutput(); err != nil {
		e.Close()
		return nil, nil, fmt.Errorf("pgbench -i: %w: %s", err, out)
	}
	return e, p, nil
}

func conn(p *lab.Node) []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(p.PGPort), "-U", "postgres"}
}

// run is one pgbench run on p; with wait false its sessions commit with
// synchronous_commit=local (no wait for the gate or any standby).
func (b bencher) run(ctx context.Context, p *lab.Node, wait bool) (result, error) {
	res := result{gate: wait}
	args := append([]string{"-c", strconv.Itoa(b.c), "-j", strconv.Itoa(b.j), "-T", strconv.Itoa(b.secs), "-M", "simple"}, conn(p)...)
	cmd := exec.CommandContext(ctx, b.pgbench, append(args, "postgres")...)
	cmd.Env = os.Environ()
	if !wait {
		cmd.Env = append(cmd.Env, "PGOPTIONS=-c synchronous_commit=local")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	m1, m2 := reTPS.FindSubmatch(out), reLat.FindSubmatch(out)
	if m1 == nil || m2 == nil {
		return res, fmt.Errorf("pgbench output not understood: %s", out)
	}
	res.tps, _ = strconv.ParseFloat(string(m1[1]), 64)
	res.latM, _ = strconv.ParseFloat(string(m2[1]), 64)
	return res, nil
}
