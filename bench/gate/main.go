// Command gate measures what the lease gate (pgctl/gate.go) costs a
// primary's commits in asynchronous mode: on a fresh lab (one standby and a
// witness) per configuration, alternating with and without the gate
// (postgres.disable_lease_gate), it runs pgbench's default TPC-B-like
// script against the primary and prints TPS and latency.
//
// It prints measured numbers; it asserts nothing about speed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/config"
)

type result struct {
	gate      bool
	tps, latM float64
}

func main() {
	bin := flag.String("bin", "bin/hasidecar", "the hasidecar binary to run in the lab")
	pgbench := flag.String("pgbench", "/usr/lib/postgresql/15/bin/pgbench", "the pgbench binary")
	rounds := flag.Int("rounds", 2, "labs per configuration (alternating)")
	clients := flag.Int("c", 4, "pgbench -c")
	threads := flag.Int("j", 2, "pgbench -j")
	secs := flag.Int("T", 20, "pgbench -T")
	scale := flag.Int("s", 4, "pgbench -i -s")
	flag.Parse()
	benchkit.Main("gate", func(ctx context.Context) error {
		var results []result
		for r := 0; r < *rounds; r++ {
			for _, gate := range []bool{false, true} {
				res, err := trial(ctx, *bin, *pgbench, gate, *clients, *threads, *secs, *scale)
				if err != nil {
					return err
				}
				results = append(results, res)
				fmt.Printf("round %d gate=%-5v tps=%.1f latency_avg=%.3f ms\n", r+1, gate, res.tps, res.latM)
			}
		}
		for _, gate := range []bool{false, true} {
			var tps, lat float64
			n := 0
			for _, r := range results {
				if r.gate == gate {
					tps, lat, n = tps+r.tps, lat+r.latM, n+1
				}
			}
			fmt.Printf("mean gate=%-5v tps=%.1f latency_avg=%.3f ms (%d runs)\n", gate, tps/float64(n), lat/float64(n), n)
		}
		return nil
	})
}

var (
	reTPS = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	reLat = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

func trial(ctx context.Context, bin, pgbench string, gate bool, c, j, secs, scale int) (result, error) {
	res := result{gate: gate}
	e, err := benchkit.StartLab(ctx, benchkit.LabOptions{Binary: bin, Standbys: 1, Witness: true, Attempts: 2,
		Tune: func(cfg *config.Config) {
			if cfg.Postgres != nil {
				cfg.Postgres.DisableLeaseGate = !gate
			}
		}})
	if err != nil {
		return res, err
	}
	defer e.Close()
	v, err := e.Show(ctx)
	if err != nil {
		return res, err
	}
	p := e.Primary(v)
	if p == nil {
		return res, fmt.Errorf("no primary")
	}
	var ssn string
	if err := benchkit.ExecOn(ctx, p, "SELECT 1"); err != nil {
		return res, err
	}
	out, err := exec.CommandContext(ctx, "psql", "-XAtc", "SHOW synchronous_standby_names", "-h", "127.0.0.1", "-p", strconv.Itoa(p.PGPort), "-U", "postgres", "postgres").CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("psql: %w: %s", err, out)
	}
	ssn = strings.TrimSpace(string(out))
	benchkit.Logf("gate=%v primary %s synchronous_standby_names=%q", gate, p.Name, ssn)
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(p.PGPort), "-U", "postgres"}
	if out, err := exec.CommandContext(ctx, pgbench, append(append([]string{"-i", "-q", "-s", strconv.Itoa(scale)}, conn...), "postgres")...).CombinedOutput(); err != nil {
		return res, fmt.Errorf("pgbench -i: %w: %s", err, out)
	}
	args := append([]string{"-c", strconv.Itoa(c), "-j", strconv.Itoa(j), "-T", strconv.Itoa(secs), "-M", "simple"}, conn...)
	out, err = exec.CommandContext(ctx, pgbench, append(args, "postgres")...).CombinedOutput()
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
