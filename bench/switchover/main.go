// Command switchover measures the write-unavailability window of a planned
// switchover: on one lab (two standbys and a witness) it runs `hasidecar
// switchover --to STANDBY` again and again, alternating the target, while a
// writer INSERTs through the multi-host read-write connection string, and
// reports the longest interval between two successful INSERTs around each
// switchover.
//
// It prints measured numbers; it asserts nothing about speed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/lab"
)

type options struct {
	bin        string
	trials     int
	jsonPath   string
	keep       bool
	logs       string
	warmup     time.Duration
	before     time.Duration
	after      time.Duration
	cliTimeout time.Duration
	healthy    time.Duration
	rate       float64
	dsnExtra   string
	attempts   int
	upTime     time.Duration
}

// trialResult is one switchover.
type trialResult struct {
	Trial int    `json:"trial"`
	From  string `json:"from"`
	To    string `json:"to"`
	Addr  string `json:"asked"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`

	// GapS is the longest interval between two consecutive successful
	// INSERTs completed in [start - before, end + after]; GapStartS and
	// GapEndS are its ends relative to the start of the command.
	GapS      float64 `json:"gap_s"`
	GapStartS float64 `json:"gap_start_s"`
	GapEndS   float64 `json:"gap_end_s"`
	GapBefore string  `json:"gap_last_writer_before"`
	GapAfter  string  `json:"gap_first_writer_after"`
	// CommandS is how long `hasidecar switchover` took.
	CommandS         float64 `json:"command_s"`
	Output           string  `json:"output"`
	TermBefore       uint64  `json:"term_before"`
	TermAfter        uint64  `json:"term_after"`
	PrimaryAfter     string  `json:"primary_after"`
	SwitchoverEvents int     `json:"switchover_events"`
	InsertsOK        int     `json:"inserts_ok_in_window"`
	InsertsFailed    int     `json:"inserts_failed_in_window"`
	// Failures are the writer's errors in the window (the first 20), with
	// their time relative to the start of the command.
	Failures []string `json:"failures_in_window,omitempty"`

	gap time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/hasidecar", "the hasidecar binary to run in the lab and as the CLI")
	flag.IntVar(&o.trials, "trials", 5, "number of switchovers (targets alternate between the standbys)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the lab directory when a trial failed, for inspection")
	flag.StringVar(&o.logs, "logs", "", "copy every node's hasidecar.log and postgres.log to DIR/NODE/ before the lab is torn down (to read the timings of switchovers that passed)")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "how long the writer runs before the first switchover")
	flag.DurationVar(&o.before, "before", time.Second, "the window starts this long before the switchover command")
	flag.DurationVar(&o.after, "after", 5*time.Second, "the window ends this long after the switchover command returned")
	flag.DurationVar(&o.cliTimeout, "cli-timeout", 2*time.Minute, "give up on one `hasidecar switchover` command after this long")
	flag.DurationVar(&o.healthy, "healthy-timeout", 2*time.Minute, "how long to wait for the lab to be healthy again between trials")
	flag.Float64Var(&o.rate, "rate", 0, "INSERTs per second (0: as fast as one connection goes)")
	flag.StringVar(&o.dsnExtra, "dsn-extra", "", "libpq keywords appended to the writer's multi-host connection string, e.g. sslmode=disable")
	flag.IntVar(&o.attempts, "lab-attempts", 2, "fresh labs to try when one does not become healthy (each failure is reported)")
	flag.DurationVar(&o.upTime, "up-timeout", 2*time.Minute, "how long the new lab may take to become healthy")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/switchover -bin bin/hasidecar [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "switchover: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if o.trials < 1 {
		fmt.Fprintln(os.Stderr, "switchover: -trials must be at least 1")
		os.Exit(2)
	}
	var err error
	if o.bin, err = benchkit.AbsBinary(o.bin); err != nil {
		fmt.Fprintln(os.Stderr, "switchover:", err)
		os.Exit(2)
	}
	benchkit.Main("switchover", func(ctx context.Context) error { return run(ctx, o) })
}

func run(ctx context.Context, o options) error {
	host, _ := os.Hostname()
	rep := struct {
		Binary           string          `json:"binary"`
		Host             string          `json:"host"`
		CPUs             int             `json:"cpus"`
		StartedAt        time.Time       `json:"started_at"`
		LabStartFailures []string        `json:"lab_start_failures,omitempty"`
		Trials           []*trialResult  `json:"trials"`
		Summary          *benchkit.Stats `json:"summary"`
		AckedChecked     int             `json:"acknowledged_inserts_checked"`
		AckedLost        int             `json:"acknowledged_inserts_lost"`
	}{Binary: o.bin, Host: host, CPUs: runtime.NumCPU(), StartedAt: time.Now()}
	fmt.Printf("switchover benchmark: %s, %d trial(s), %d CPUs; gap = longest interval between two successful INSERTs in [start-%s, end+%s]\n\n",
		o.bin, o.trials, runtime.NumCPU(), o.before, o.after)

	env, err := benchkit.StartLab(ctx, benchkit.LabOptions{Binary: o.bin, Standbys: 2, Witness: true, Keep: o.keep,
		Attempts: o.attempts, UpTimeout: o.upTime})
	if err != nil {
		return err
	}
	defer env.Close()
	if o.logs != "" {
		defer env.CopyLogs(o.logs) // runs before Close
	}
	rep.LabStartFailures = env.StartFailures
	_, _, w, err := env.StartWriting(ctx, o.dsnExtra, benchkit.WriterOptions{Rate: o.rate})
	if err != nil {
		return err
	}
	defer w.Stop()
	if err := benchkit.Sleep(ctx, o.warmup); err != nil {
		return err
	}

	var gaps []time.Duration
	var runErr error
	for i := 1; i <= o.trials; i++ {
		r, err := trial(ctx, o, env, w, i)
		if r != nil {
			rep.Trials = append(rep.Trials, r)
			fmt.Println(r.line(o.trials))
			if r.OK {
				gaps = append(gaps, r.gap)
			}
		}
		if err != nil {
			runErr = err
			break
		}
	}
	// Every acknowledged INSERT must be on the primary at the end.
	w.Stop()
	lost := -1
	if runErr == nil {
		v, err := env.WaitHealthy(ctx, o.healthy)
		var p *lab.Node
		if err == nil {
			if p = env.Primary(v); p == nil {
				err = errors.New("cluster show names no primary")
			}
		}
		if err == nil {
			checked, missing, err := env.MissingWrites(ctx, p, w.Samples())
			if err != nil {
				runErr = err
			} else {
				lost = len(missing)
				rep.AckedChecked, rep.AckedLost = checked, lost
				if lost > 0 {
					runErr = fmt.Errorf("%d acknowledged INSERTs are not on the primary %s (first ids %v)", lost, p.Name, missing[:min(lost, 10)])
				}
			}
		} else {
			runErr = fmt.Errorf("after the switchovers: %w", err)
		}
	}
	st := benchkit.Summarize(gaps)
	rep.Summary = &st
	failed := 0
	for _, r := range rep.Trials {
		if !r.OK {
			failed++
		}
	}
	fmt.Printf("\nwrite unavailability during a planned switchover (longest interval between two successful INSERTs):\n")
	fmt.Printf("  %d of %d switchovers succeeded; %s\n", st.N, o.trials, st)
	if lost >= 0 {
		fmt.Printf("  acknowledged INSERTs: %d, all checked on the final primary; lost: %d\n", rep.AckedChecked, lost)
	}
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
		return fmt.Errorf("%d switchover(s) failed (see above)", failed)
	}
	return nil
}

// trial runs one switchover. A failed switchover is a result; an error
// means the run cannot go on (the lab did not recover, or ctx ended).
func trial(ctx context.Context, o options, env *benchkit.Env, w *benchkit.Writer, i int) (*trialResult, error) {
	v, err := env.WaitHealthy(ctx, o.healthy)
	if err != nil {
		if ctx.Err() == nil {
			env.DumpLogs(25)
		}
		return nil, fmt.Errorf("before switchover %d: %w", i, err)
	}
	p := env.Primary(v)
	standbys := env.Standbys(v)
	if p == nil || len(standbys) == 0 {
		return nil, fmt.Errorf("before switchover %d: no primary or no standby in cluster show", i)
	}
	target := standbys[(i-1)%len(standbys)]
	asked := p
	if n := env.Lab.Node(v.RaftLeader); n != nil {
		asked = n
	}
	r := &trialResult{Trial: i, From: p.Name, To: target.Name, Addr: asked.Name, TermBefore: v.Term}
	applied := v.AppliedIndex

	benchkit.Logf("trial %d: switchover %s -> %s (asking %s at %s)", i, p.Name, target.Name, asked.Name, asked.GRPCAddr())
	cctx, cancel := context.WithTimeout(ctx, o.cliTimeout)
	start := time.Now()
	cmd := exec.CommandContext(cctx, o.bin, "switchover", "--to", target.Name, "--addr", asked.GRPCAddr())
	cmd.Env = append(os.Environ(), "HASIDECAR_TLS_DIR="+env.Lab.TLSDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmdErr := cmd.Run()
	end := time.Now()
	cancel()
	r.CommandS = benchkit.Seconds(end.Sub(start))
	r.Output = strings.TrimSpace(out.String())
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	if err := benchkit.Sleep(ctx, time.Until(end.Add(o.after))); err != nil {
		return r, err
	}

	from, to := start.Add(-o.before), end.Add(o.after)
	window := benchkit.Between(w.Samples(), from, to)
	r.InsertsOK = len(window)
	for _, f := range w.Failures() {
		if !f.At.Before(from) && !f.At.After(to) {
			r.InsertsFailed++
			if len(r.Failures) < 20 {
				r.Failures = append(r.Failures, fmt.Sprintf("%+.3f s %s: %s", f.At.Sub(start).Seconds(), f.Op, f.Err))
			}
		}
	}
	gap, gapErr := benchkit.LongestGap(window)
	if gapErr == nil {
		r.gap = gap.Length
		r.GapS = benchkit.Seconds(gap.Length)
		r.GapStartS, r.GapEndS = benchkit.Seconds(gap.From.Sub(start)), benchkit.Seconds(gap.To.Sub(start))
		r.GapBefore, r.GapAfter = env.NameByPort(gap.FromPort), env.NameByPort(gap.ToPort)
	}

	after, err := env.Show(ctx)
	if err == nil {
		r.TermAfter = after.Term
		if np := env.Primary(after); np != nil {
			r.PrimaryAfter = np.Name
		}
	}
	if evs, err := env.Events(ctx, fsm.EventSwitchover, applied); err == nil {
		r.SwitchoverEvents = len(evs)
	}

	switch {
	case cmdErr != nil:
		r.Error = fmt.Sprintf("`hasidecar switchover --to %s` failed (%v): %s", target.Name, cmdErr, oneLine(r.Output))
	case gapErr != nil:
		r.Error = gapErr.Error()
	case r.PrimaryAfter != target.Name:
		r.Error = fmt.Sprintf("the switchover command succeeded but cluster show names %q primary, not %s", r.PrimaryAfter, target.Name)
	default:
		r.OK = true
	}
	return r, nil
}

func (r *trialResult) line(trials int) string {
	head := fmt.Sprintf("trial %d/%d  %s -> %s", r.Trial, trials, r.From, r.To)
	gap := fmt.Sprintf("gap %6.3f s (last write %+.3f s on %s, next %+.3f s on %s)", r.GapS, r.GapStartS, r.GapBefore, r.GapEndS, r.GapAfter)
	if r.InsertsOK < 2 {
		gap = "gap not measurable (fewer than two INSERTs in the window)"
	}
	if !r.OK {
		return fmt.Sprintf("%s  FAILED: %s\n    (measured anyway: %s, command %.3f s, term %d -> %d, primary now %s)",
			head, r.Error, gap, r.CommandS, r.TermBefore, r.TermAfter, r.PrimaryAfter)
	}
	return fmt.Sprintf("%s  %s  command %.3f s  term %d -> %d  failed INSERTs %d",
		head, gap, r.CommandS, r.TermBefore, r.TermAfter, r.InsertsFailed)
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + " ..."
	}
	return s
}
