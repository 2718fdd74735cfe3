// Command restart measures what restarts cost the writers, on one lab (two
// standbys and a witness) with a writer INSERTing through the multi-host
// read-write connection string:
//
//   - rolling: `config set postgresql.parameters.max_connections=N` (a
//     setting that needs a restart; N grows every trial), then `hasidecar
//     restart --pending --yes`: each standby, then a switchover. It reports
//     the longest write gap, the command's time, the promotions and the
//     acknowledged writes missing on the primary afterwards.
//   - sidecar: SIGTERM of the primary's sidecar and a new one started at
//     once (it adopts the running postmaster). It reports the longest write
//     gap, the promotions, and whether the postmaster's pid is the same.
//
// It prints measured numbers; it asserts nothing.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

type options struct {
	bin        string
	trials     int
	jsonPath   string
	keep       bool
	warmup     time.Duration
	before     time.Duration
	after      time.Duration
	settle     time.Duration
	cliTimeout time.Duration
	healthy    time.Duration
	rate       float64
	dsnExtra   string
	attempts   int
	upTime     time.Duration
}

// rollingResult is one rolling restart.
type rollingResult struct {
	Trial          int     `json:"trial"`
	MaxConnections int     `json:"max_connections"`
	OK             bool    `json:"ok"`
	Error          string  `json:"error,omitempty"`
	PendingS       float64 `json:"pending_after_s"` // config set → every node pending_restart
	TotalS         float64 `json:"total_s"`         // `hasidecar restart` command
	GapS           float64 `json:"gap_s"`
	GapAt          float64 `json:"gap_start_s"` // relative to the start of the command
	Promotions     int     `json:"promotions"`
	PrimaryBefore  string  `json:"primary_before"`
	PrimaryAfter   string  `json:"primary_after"`
	Acked          int     `json:"acked_writes"`
	Lost           int     `json:"acked_writes_lost"`
	Output         string  `json:"output"`

	gap, total time.Duration
}

// sidecarResult is one restart of the primary's sidecar.
type sidecarResult struct {
	Trial        int     `json:"trial"`
	Node         string  `json:"node"`
	OK           bool    `json:"ok"`
	Error        string  `json:"error,omitempty"`
	StopS        float64 `json:"stop_s"`    // SIGTERM → the old sidecar gone
	AdoptedS     float64 `json:"adopted_s"` // SIGTERM → the new one adopted the postmaster
	GapS         float64 `json:"gap_s"`
	Promotions   int     `json:"promotions"`
	PIDBefore    int     `json:"postmaster_pid_before"`
	PIDAfter     int     `json:"postmaster_pid_after"`
	SamePID      bool    `json:"postmaster_pid_unchanged"`
	TermBefore   uint64  `json:"term_before"`
	TermAfter    uint64  `json:"term_after"`
	Acked        int     `json:"acked_writes"`
	Lost         int     `json:"acked_writes_lost"`
	gap, adopted time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/hasidecar", "the hasidecar binary to run in the lab and as the CLI")
	flag.IntVar(&o.trials, "trials", 3, "number of trials of each (one lab for all)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the lab directory when a trial failed, for inspection")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "how long the writer runs before the first trial")
	flag.DurationVar(&o.before, "before", time.Second, "a window starts this long before its command")
	flag.DurationVar(&o.after, "after", 3*time.Second, "a window ends this long after its command returned")
	flag.DurationVar(&o.settle, "settle", 9*time.Second, "sidecar: how long to keep writing after the adoption (past two leases at defaults)")
	flag.DurationVar(&o.cliTimeout, "cli-timeout", 5*time.Minute, "give up on one `hasidecar restart` after this long")
	flag.DurationVar(&o.healthy, "healthy-timeout", 2*time.Minute, "how long to wait for the lab to be healthy between trials")
	flag.Float64Var(&o.rate, "rate", 0, "INSERTs per second (0: as fast as one connection goes)")
	flag.StringVar(&o.dsnExtra, "dsn-extra", "", "libpq keywords appended to the writer's multi-host connection string")
	flag.IntVar(&o.attempts, "lab-attempts", 2, "fresh labs to try when one does not become healthy")
	flag.DurationVar(&o.upTime, "up-timeout", 2*time.Minute, "how long the new lab may take to become healthy")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/restart -bin bin/hasidecar [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "restart: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.trials < 1 {
		fmt.Fprintln(os.Stderr, "restart: -trials must be at least 1")
		os.Exit(2)
	}
	var err error
	if o.bin, err = benchkit.AbsBinary(o.bin); err != nil {
		fmt.Fprintln(os.Stderr, "restart:", err)
		os.Exit(2)
	}
	benchkit.Main("restart", func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) error {
	host, _ := os.Hostname()
	rep := struct {
		Binary         string           `json:"binary"`
		Host           string           `json:"host"`
		CPUs           int              `json:"cpus"`
		StartedAt      time.Time        `json:"started_at"`
		Rolling        []*rollingResult `json:"rolling"`
		Sidecar        []*sidecarResult `json:"sidecar"`
		RollingGap     benchkit.Stats   `json:"rolling_gap"`
		RollingTotal   benchkit.Stats   `json:"rolling_total"`
		SidecarGap     benchkit.Stats   `json:"sidecar_gap"`
		SidecarAdopted benchkit.Stats   `json:"sidecar_adopted"`
	}{Binary: o.bin, Host: host, CPUs: runtime.NumCPU(), StartedAt: time.Now()}
	fmt.Printf("restart benchmark: %s, %d trial(s) of each, %d CPUs; gap = longest interval between two successful INSERTs in [start-%s, end+%s]\n\n",
		o.bin, o.trials, runtime.NumCPU(), o.before, o.after)
	env, err := benchkit.StartLab(ctx, benchkit.LabOptions{Binary: o.bin, Standbys: 2, Witness: true, Keep: o.keep,
		Attempts: o.attempts, UpTimeout: o.upTime})
	if err != nil {
		return err
	}
	defer env.Close()
	_, _, w, err := env.StartWriting(ctx, o.dsnExtra, benchkit.WriterOptions{Rate: o.rate})
	if err != nil {
		return err
	}
	defer w.Stop()
	if err := benchkit.Sleep(ctx, o.warmup); err != nil {
		return err
	}
	var rollGaps, rollTotals, carGaps, carAdopted []time.Duration
	failed := 0
	var runErr error
	for i := 1; i <= o.trials && runErr == nil; i++ {
		r, err := rollingTrial(ctx, o, env, w, i)
		if r != nil {
			rep.Rolling = append(rep.Rolling, r)
			fmt.Println(r.line(o.trials))
			if r.OK {
				rollGaps, rollTotals = append(rollGaps, r.gap), append(rollTotals, r.total)
			} else {
				failed++
			}
		}
		if err != nil {
			runErr = err
			break
		}
		s, err := sidecarTrial(ctx, o, env, w, i)
		if s != nil {
			rep.Sidecar = append(rep.Sidecar, s)
			fmt.Println(s.line(o.trials))
			if s.OK {
				carGaps, carAdopted = append(carGaps, s.gap), append(carAdopted, s.adopted)
			} else {
				failed++
			}
		}
		if err != nil {
			runErr = err
		}
	}
	rep.RollingGap, rep.RollingTotal = benchkit.Summarize(rollGaps), benchkit.Summarize(rollTotals)
	rep.SidecarGap, rep.SidecarAdopted = benchkit.Summarize(carGaps), benchkit.Summarize(carAdopted)
	fmt.Printf("\nrolling restart (`hasidecar restart --pending --yes` after raising max_connections):\n")
	fmt.Printf("  longest write gap: %s\n  total time:        %s\n", rep.RollingGap, rep.RollingTotal)
	fmt.Printf("sidecar restart on the primary (SIGTERM, start again):\n")
	fmt.Printf("  longest write gap: %s\n  SIGTERM → adopted: %s\n", rep.SidecarGap, rep.SidecarAdopted)
	if o.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the JSON results: %w", err)
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write the JSON results: %w", err)
		}
		fmt.Printf("\nresults written to %s\n", o.jsonPath)
	}
	if failed > 0 || runErr != nil {
		env.MarkFailed()
	}
	switch {
	case runErr != nil:
		return runErr
	case failed > 0:
		return fmt.Errorf("%d trial(s) failed (see above)", failed)
	}
	return nil
}

// cli runs the hasidecar CLI against the Raft leader of v (else the primary).
func cli(ctx context.Context, o options, env *benchkit.Env, v *pb.ShowResponse, args ...string) (string, error) {
	asked := env.Primary(v)
	if n := env.Lab.Node(v.RaftLeader); n != nil {
		asked = n
	}
	cctx, cancel := context.WithTimeout(ctx, o.cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, o.bin, append(args, "--addr", asked.GRPCAddr())...)
	cmd.Env = append(os.Environ(), "HASIDECAR_TLS_DIR="+env.Lab.TLSDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("hasidecar %s: %w: %s", strings.Join(args, " "), err, oneLine(out.String()))
	}
	return out.String(), nil
}

func rollingTrial(ctx context.Context, o options, env *benchkit.Env, w *benchkit.Writer, i int) (*rollingResult, error) {
	v, err := env.WaitHealthy(ctx, o.healthy)
	if err != nil {
		return nil, fmt.Errorf("before rolling restart %d: %w", i, err)
	}
	r := &rollingResult{Trial: i, MaxConnections: 140 + 10*i}
	if p := env.Primary(v); p != nil {
		r.PrimaryBefore = p.Name
	}
	set := time.Now()
	if _, err := cli(ctx, o, env, v, "config", "set", fmt.Sprintf("postgresql.parameters.max_connections=%d", r.MaxConnections)); err != nil {
		return nil, err
	}
	// Every data node must show the setting pending before the restart.
	for {
		cur, err := env.Show(ctx)
		if err == nil && allPending(cur) {
			v = cur
			break
		}
		if time.Since(set) > o.healthy {
			return nil, fmt.Errorf("rolling restart %d: not every node shows max_connections pending after %s", i, o.healthy)
		}
		if err := benchkit.Sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	r.PendingS = benchkit.Seconds(time.Since(set))
	applied := v.AppliedIndex
	start := time.Now()
	out, cmdErr := cli(ctx, o, env, v, "restart", "--pending", "--yes")
	end := time.Now()
	r.total = end.Sub(start)
	r.TotalS = benchkit.Seconds(r.total)
	r.Output = strings.TrimSpace(out)
	if err := benchkit.Sleep(ctx, time.Until(end.Add(o.after))); err != nil {
		return r, err
	}
	window := benchkit.Between(w.Samples(), start.Add(-o.before), end.Add(o.after))
	gap, gapErr := benchkit.LongestGap(window)
	if gapErr == nil {
		r.gap, r.GapS, r.GapAt = gap.Length, benchkit.Seconds(gap.Length), benchkit.Seconds(gap.From.Sub(start))
	}
	if evs, err := env.Events(ctx, fsm.EventStandbyPromote, applied); err == nil {
		r.Promotions = len(evs)
	}
	after, err := env.Show(ctx)
	var np *lab.Node
	if err == nil {
		np = env.Primary(after)
	}
	if np != nil {
		r.PrimaryAfter = np.Name
		r.Acked, r.Lost, err = lostAcks(ctx, np, w.Samples())
		if err != nil {
			gapErr = err
		}
	}
	switch {
	case cmdErr != nil:
		r.Error = cmdErr.Error()
	case gapErr != nil:
		r.Error = gapErr.Error()
	case np == nil:
		r.Error = "no primary after the restart"
	default:
		r.OK = true
	}
	return r, nil
}

func allPending(v *pb.ShowResponse) bool {
	n := 0
	for _, node := range v.Nodes {
		if node.Kind != pb.NodeKind_NODE_KIND_DATA {
			continue
		}
		if len(node.GetPostgres().GetPendingRestart()) == 0 {
			return false
		}
		n++
	}
	return n > 0
}

var adoptedRE = regexp.MustCompile(`adopted the postmaster the previous sidecar left running`)

func sidecarTrial(ctx context.Context, o options, env *benchkit.Env, w *benchkit.Writer, i int) (*sidecarResult, error) {
	v, err := env.WaitHealthy(ctx, o.healthy)
	if err != nil {
		return nil, fmt.Errorf("before sidecar restart %d: %w", i, err)
	}
	p := env.Primary(v)
	if p == nil {
		return nil, fmt.Errorf("before sidecar restart %d: no primary", i)
	}
	r := &sidecarResult{Trial: i, Node: p.Name, PIDBefore: p.PostmasterPID(), TermBefore: v.Term}
	applied := v.AppliedIndex
	logBefore, _ := os.ReadFile(p.LogPath)
	start := time.Now()
	if err := env.Lab.Stop(p, 30*time.Second); err != nil {
		r.Error = err.Error()
	}
	r.StopS = benchkit.Seconds(time.Since(start))
	if err := env.Lab.Start(p); err != nil {
		return r, fmt.Errorf("start %s's sidecar again: %w", p.Name, err)
	}
	for {
		b, _ := os.ReadFile(p.LogPath)
		if len(b) >= len(logBefore) && adoptedRE.Match(b[len(logBefore):]) {
			r.adopted = time.Since(start)
			break
		}
		if time.Since(start) > 30*time.Second {
			r.Error = "the new sidecar did not adopt the postmaster within 30 s"
			break
		}
		if err := benchkit.Sleep(ctx, 20*time.Millisecond); err != nil {
			return r, err
		}
	}
	r.AdoptedS = benchkit.Seconds(r.adopted)
	if err := benchkit.Sleep(ctx, o.settle); err != nil {
		return r, err
	}
	end := time.Now()
	window := benchkit.Between(w.Samples(), start.Add(-o.before), end)
	gap, gapErr := benchkit.LongestGap(window)
	if gapErr == nil {
		r.gap, r.GapS = gap.Length, benchkit.Seconds(gap.Length)
	}
	r.PIDAfter = p.PostmasterPID()
	r.SamePID = r.PIDAfter == r.PIDBefore && r.PIDBefore != 0
	if !r.SamePID {
		r.Error = fmt.Sprintf("the postmaster's pid was %d before the restart, %d after the settle time", r.PIDBefore, r.PIDAfter)
	}
	if evs, err := env.Events(ctx, fsm.EventStandbyPromote, applied); err == nil {
		r.Promotions = len(evs)
	}
	if after, err := env.WaitHealthy(ctx, o.healthy); err == nil {
		r.TermAfter = after.Term
		if np := env.Primary(after); np != nil {
			r.Acked, r.Lost, err = lostAcks(ctx, np, w.Samples())
			if err != nil && r.Error == "" {
				r.Error = err.Error()
			}
		}
	} else if r.Error == "" {
		r.Error = err.Error()
	}
	if r.Error == "" && gapErr != nil {
		r.Error = gapErr.Error()
	}
	r.OK = r.Error == ""
	return r, nil
}

// lostAcks counts the acknowledged INSERTs (samples) whose row is not on
// node's Postgres.
func lostAcks(ctx context.Context, n *lab.Node, samples []benchkit.Sample) (acked, lost int, err error) {
	ids := make([]int64, len(samples))
	for i, s := range samples {
		ids[i] = s.ID
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, benchkit.DSN(n))
	if err != nil {
		return 0, 0, fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	defer conn.Close(context.Background())
	var found int
	if err := conn.QueryRow(cctx, "SELECT count(*) FROM "+benchkit.TableName+" WHERE id = ANY($1)", ids).Scan(&found); err != nil {
		return 0, 0, fmt.Errorf("count the acknowledged rows on %s: %w", n.Name, err)
	}
	return len(ids), len(ids) - found, nil
}

func (r *rollingResult) line(trials int) string {
	head := fmt.Sprintf("rolling %d/%d  max_connections=%d  %s -> %s", r.Trial, trials, r.MaxConnections, r.PrimaryBefore, r.PrimaryAfter)
	body := fmt.Sprintf("gap %.3f s (at %+.3f s)  total %.3f s  promotions %d  acked %d lost %d  (pending on every node %.3f s after config set)",
		r.GapS, r.GapAt, r.TotalS, r.Promotions, r.Acked, r.Lost, r.PendingS)
	if !r.OK {
		return fmt.Sprintf("%s  FAILED: %s\n    (measured anyway: %s)", head, r.Error, body)
	}
	return head + "  " + body
}

func (r *sidecarResult) line(trials int) string {
	head := fmt.Sprintf("sidecar %d/%d  %s", r.Trial, trials, r.Node)
	body := fmt.Sprintf("gap %.3f s  stop %.3f s  adopted %.3f s after SIGTERM  promotions %d  postmaster pid %d -> %d (unchanged %t)  term %d -> %d  acked %d lost %d",
		r.GapS, r.StopS, r.AdoptedS, r.Promotions, r.PIDBefore, r.PIDAfter, r.SamePID, r.TermBefore, r.TermAfter, r.Acked, r.Lost)
	if !r.OK {
		return fmt.Sprintf("%s  FAILED: %s\n    (measured anyway: %s)", head, r.Error, body)
	}
	return head + "  " + body
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + " ..."
	}
	return s
}
