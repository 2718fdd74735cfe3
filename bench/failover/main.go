// Command failover measures how long writes are unavailable when the
// primary's whole host dies: for each lab configuration it runs trials on a
// fresh lab (two standbys and a witness), kills the primary's sidecar and
// Postgres at once, and reports the time from the kill until the first
// successful INSERT on another node. With -idle it instead runs one lab
// without any fault and counts failovers that should not happen.
//
// It prints measured numbers; it asserts nothing about speed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/config"
)

type options struct {
	bin      string
	trials   int
	configs  []labConfig
	jsonPath string
	keep     bool
	logs     string // copy every trial's logs under this directory
	warmup   time.Duration
	jitter   bool  // add a random part of the renewal interval to the warm-up
	seed     int64 // of the jitter
	timeout  time.Duration
	settle   time.Duration
	rate     float64
	dsnExtra string
	idle     time.Duration
	idleRate float64
	attempts int
	upTime   time.Duration
	// the lab's shape and timings (-standbys, -lease, -raft, -monitor)
	standbys int
	lease    time.Duration // 0: each configuration's own
	raft     time.Duration // raft.heartbeat_timeout and election_timeout (0: defaults)
	monitor  time.Duration // timing.monitor_interval (0: default)
	// pgbench: clients of a pgbench run on the primary from the warm-up
	// until the kill (0: none), with the pgbench binary pgbenchBin.
	pgbench    int
	pgbenchBin string
	// net: loopback (every node on 127.0.0.1), netns (a network namespace
	// per node) or blackhole (netns, and the killed node's namespace drops
	// every packet from the kill on, as on power loss).
	net         string
	stmtTimeout time.Duration // the writer's per-INSERT time-out
}

// The -net modes.
const (
	netLoopback  = "loopback"
	netNetns     = "netns"
	netBlackhole = "blackhole"
)

// labOptions is the lab every mode runs: -standbys standbys (two by
// default) and a witness, with the configuration's and the flags' timings.
func (o options) labOptions(c labConfig) benchkit.LabOptions {
	tune := c.tune()
	return benchkit.LabOptions{Binary: o.bin, Standbys: o.standbys, Witness: true, Keep: o.keep, Netns: o.net != netLoopback,
		Attempts: o.attempts, UpTimeout: o.upTime, Tune: func(cfg *config.Config) {
			if tune != nil {
				tune(cfg)
			}
			if o.raft > 0 {
				cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = config.Duration(o.raft), config.Duration(o.raft)
			}
			if o.monitor > 0 {
				cfg.Timing.MonitorInterval = config.Duration(o.monitor)
			}
		}}
}

// labConfig is a named adjustment of the lab's node configs.
type labConfig struct {
	Name  string
	Lease time.Duration // 0: the default
}

func (c labConfig) tune() func(*config.Config) {
	if c.Lease == 0 {
		return nil
	}
	return func(cfg *config.Config) { cfg.Timing.Lease = config.Duration(c.Lease) }
}

// lease is the configuration's timing.lease.
func (c labConfig) lease() time.Duration {
	if c.Lease == 0 {
		return config.DefaultLease.D()
	}
	return c.Lease
}

func (c labConfig) leaseText() string {
	if c.Lease == 0 {
		return config.DefaultLease.D().String()
	}
	return c.Lease.String()
}

var leaseRe = regexp.MustCompile(`^lease(\d.*)$`)

// parseConfigs reads "default,lease2s,...": default is the lab as it is;
// leaseDUR sets timing.lease to DUR on every node.
func parseConfigs(s string) ([]labConfig, error) {
	var out []labConfig
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		switch m := leaseRe.FindStringSubmatch(name); {
		case name == "":
		case name == "default":
			out = append(out, labConfig{Name: name})
		case m != nil:
			d, err := time.ParseDuration(m[1])
			if err != nil {
				return nil, fmt.Errorf("-config %s: %q is not a duration (e.g. lease2s, lease1500ms)", name, m[1])
			}
			out = append(out, labConfig{Name: name, Lease: d})
		default:
			return nil, fmt.Errorf("-config: unknown configuration %q (known: default, lease<DURATION> such as lease2s)", name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-config: name at least one configuration")
	}
	return out, nil
}

func main() {
	var o options
	var configs string
	flag.StringVar(&o.bin, "bin", "bin/hasidecar", "the hasidecar binary to run in the lab")
	flag.IntVar(&o.trials, "trials", 5, "trials per configuration (a fresh lab each)")
	flag.StringVar(&configs, "config", "default,lease2s", "configurations to measure, comma separated: default (lab defaults, lease 4s), lease<DURATION> (timing.lease set, e.g. lease2s)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.logs, "logs", "", "copy every trial's hasidecar.log and postgres.log files to DIR/CONFIG-TRIAL/NODE/ before the lab is torn down (to read the timings of a trial that passed)")
	flag.BoolVar(&o.keep, "keep", false, "keep the lab directory of a failed trial for inspection")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "how long the writer runs before the kill")
	flag.BoolVar(&o.jitter, "jitter", true, "add to the warm-up a random delay under the renewal interval (lease/3), so that the kills fall at random points of the lease's renewal cycle; without it a lab's nearly fixed start-up timing kills at nearly the same point each trial")
	flag.Int64Var(&o.seed, "seed", 0, "seed of the jitter (0: from the clock; printed)")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "a trial fails when no INSERT succeeds on another node this long after the kill")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "how long to keep writing after the failover before counting promotions")
	flag.Float64Var(&o.rate, "rate", 0, "INSERTs per second in kill trials (0: as fast as one connection goes)")
	flag.DurationVar(&o.idle, "idle", 0, "instead of kill trials, run one lab (the first -config) this long without any fault and count failovers (expected 0)")
	flag.Float64Var(&o.idleRate, "idle-rate", 20, "INSERTs per second during -idle")
	flag.StringVar(&o.dsnExtra, "dsn-extra", "", "libpq keywords appended to the writer's multi-host connection string, e.g. sslmode=disable")
	flag.IntVar(&o.attempts, "lab-attempts", 2, "fresh labs to try when one does not become healthy (each failure is reported)")
	flag.DurationVar(&o.upTime, "up-timeout", 2*time.Minute, "how long a new lab may take to become healthy")
	flag.IntVar(&o.standbys, "standbys", 2, "standbys in each lab (besides the primary and the witness)")
	flag.DurationVar(&o.lease, "lease", 0, "timing.lease of the default configuration (0: the default, 4s); the same as -config leaseD")
	flag.DurationVar(&o.raft, "raft", 0, "raft.heartbeat_timeout and raft.election_timeout on every node (0: the defaults, 500ms)")
	flag.DurationVar(&o.monitor, "monitor", 0, "timing.monitor_interval on every node (0: the default, 1s)")
	flag.IntVar(&o.pgbench, "pgbench", 0, "run pgbench with this many clients (-j 2) on the primary from the start of the warm-up until the kill (0: none)")
	flag.StringVar(&o.pgbenchBin, "pgbench-bin", "/usr/lib/postgresql/15/bin/pgbench", "the pgbench binary for -pgbench")
	flag.StringVar(&o.net, "net", netLoopback, "the lab's network: loopback (every node on 127.0.0.1: a killed node's ports refuse at once), netns (a network namespace per node, on a bridge; needs root and nftables), blackhole (netns, and at the kill the killed node's namespace drops every packet, as on power loss: peers and clients see time-outs, not refusals)")
	flag.DurationVar(&o.stmtTimeout, "statement-timeout", 5*time.Second, "the writer's time-out per INSERT: with -net blackhole an INSERT in flight at the kill waits this long, as a real client's would (its connect_timeout, 2 s per host, is in the connection string: -dsn-extra connect_timeout=1 changes it)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/failover -bin bin/hasidecar [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.seed == 0 {
		o.seed = time.Now().UnixNano() % 1e9
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "failover: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	var err error
	if o.configs, err = parseConfigs(configs); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(2)
	}
	if o.lease > 0 {
		for i := range o.configs {
			if o.configs[i].Name == "default" {
				o.configs[i] = labConfig{Name: "lease" + o.lease.String(), Lease: o.lease}
			}
		}
	}
	if o.net != netLoopback && o.net != netNetns && o.net != netBlackhole {
		fmt.Fprintf(os.Stderr, "failover: -net %q: use loopback, netns or blackhole\n", o.net)
		os.Exit(2)
	}
	if o.standbys < 1 {
		fmt.Fprintln(os.Stderr, "failover: -standbys must be at least 1")
		os.Exit(2)
	}
	if o.trials < 1 {
		fmt.Fprintln(os.Stderr, "failover: -trials must be at least 1")
		os.Exit(2)
	}
	if o.bin, err = benchkit.AbsBinary(o.bin); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(2)
	}
	benchkit.Main("failover", func(ctx context.Context) error {
		if o.idle > 0 {
			return runIdle(ctx, o)
		}
		return runTrials(ctx, o)
	})
}

func (o options) netText() string {
	switch o.net {
	case netNetns:
		return "a network namespace per node"
	case netBlackhole:
		return fmt.Sprintf("a network namespace per node, the killed node's dropping every packet from the kill on (writer: %s per INSERT, connect_timeout in the DSN per host)", o.stmtTimeout)
	}
	return "loopback"
}

// report is what -json writes.
type report struct {
	Mode      string                    `json:"mode"`
	Net       string                    `json:"net"`
	Binary    string                    `json:"binary"`
	Host      string                    `json:"host"`
	CPUs      int                       `json:"cpus"`
	StartedAt time.Time                 `json:"started_at"`
	Trials    []trialResult             `json:"trials,omitempty"`
	Summary   map[string]benchkit.Stats `json:"summary,omitempty"`
	Idle      *idleResult               `json:"idle,omitempty"`
}

func newReport(o options, mode string) *report {
	host, _ := os.Hostname()
	return &report{Mode: mode, Net: o.net, Binary: o.bin, Host: host, CPUs: runtime.NumCPU(), StartedAt: time.Now()}
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the JSON results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the JSON results: %w", err)
	}
	fmt.Printf("\nresults written to %s\n", path)
	return nil
}

func runTrials(ctx context.Context, o options) error {
	rep := newReport(o, "kill")
	fmt.Printf("failover benchmark: %s, %d trial(s) per configuration, %d CPUs, %d standbys; kill = SIGKILL of the primary's sidecar and Postgres; network: %s\n",
		o.bin, o.trials, runtime.NumCPU(), o.standbys, o.netText())
	if o.jitter {
		fmt.Printf("kill after the %s warm-up plus a random delay under the renewal interval, lease/3 (-seed %d)\n\n", o.warmup, o.seed)
	} else {
		fmt.Printf("kill after the %s warm-up, no jitter\n\n", o.warmup)
	}
	byConfig := map[string][]time.Duration{}
	for _, c := range o.configs {
		for i := 1; i <= o.trials && ctx.Err() == nil; i++ {
			benchkit.Logf("%s: trial %d/%d: starting a lab (lease %s)", c.Name, i, o.trials, c.leaseText())
			r := runTrial(ctx, o, c, i)
			rep.Trials = append(rep.Trials, r)
			fmt.Println(r.line(o.trials))
			if r.OK {
				byConfig[c.Name] = append(byConfig[c.Name], r.failover)
			}
		}
	}
	rep.Summary = map[string]benchkit.Stats{}
	fmt.Println()
	var rows [][]string
	failed := 0
	for _, c := range o.configs {
		st := benchkit.Summarize(byConfig[c.Name])
		rep.Summary[c.Name] = st
		ran, leaders := 0, 0
		for _, r := range rep.Trials {
			if r.Config == c.Name {
				ran++
				if !r.OK {
					failed++
				}
				if r.OK && r.KilledWasRaftLeader {
					leaders++
				}
			}
		}
		fmt.Printf("%s (lease %s): %s\n", c.Name, c.leaseText(), st)
		row := []string{c.Name, c.leaseText(), strconv.Itoa(ran), strconv.Itoa(st.N), strconv.Itoa(leaders), "-", "-", "-", "-"}
		if st.N > 0 {
			row[5], row[6], row[7], row[8] = benchkit.Secs(st.Median), benchkit.Secs(st.Min), benchkit.Secs(st.Max), benchkit.Secs(st.Mean)
		}
		rows = append(rows, row)
	}
	fmt.Println("\nwrite unavailability after the primary's host is killed (kill -> first INSERT on the new primary):")
	benchkit.Table(os.Stdout, []string{"config", "lease", "trials", "ok", "leader killed", "median", "min", "max", "mean"}, rows)
	if err := writeJSON(o.jsonPath, rep); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%d trial(s) failed (see above)", failed)
	}
	return nil
}
