package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/bench/internal/benchkit"
	"github.com/hasidecar/hasidecar/fsm"
)

// idleResult is the no-fault run.
type idleResult struct {
	Config           string         `json:"config"`
	DurationS        float64        `json:"duration_s"`
	Rate             float64        `json:"rate"`
	TermBefore       uint64         `json:"term_before"`
	TermAfter        uint64         `json:"term_after"`
	PrimaryBefore    string         `json:"primary_before"`
	PrimaryAfter     string         `json:"primary_after"`
	RaftLeaderBefore string         `json:"raft_leader_before"`
	RaftLeaderAfter  string         `json:"raft_leader_after"`
	LeaderChanges    int            `json:"raft_leader_changes_seen"`
	FailoverEvents   int            `json:"failover_events"`
	PromoteEvents    int            `json:"standby_promote_events"`
	Events           map[string]int `json:"events_during_run"`
	InsertsOK        int            `json:"inserts_ok"`
	InsertsFailed    int            `json:"inserts_failed"`
	FirstFailures    []string       `json:"first_failures,omitempty"`
	LongestGapS      float64        `json:"longest_gap_s"`
	Writers          []string       `json:"writers"`
	LabStartFailures []string       `json:"lab_start_failures,omitempty"`
}

// runIdle runs one lab without any fault under a gentle write load and
// counts what should not happen: failovers, promotions, failed INSERTs.
func runIdle(ctx context.Context, o options) error {
	c := o.configs[0]
	rep := newReport(o, "idle")
	res := &idleResult{Config: c.Name, Rate: o.idleRate, Events: map[string]int{}}
	rep.Idle = res
	fmt.Printf("idle run: %s for %s at %.0f INSERTs/s, config %s (lease %s), no fault\n\n", o.bin, o.idle, o.idleRate, c.Name, c.leaseText())

	env, err := benchkit.StartLab(ctx, o.labOptions(c))
	if err != nil {
		return err
	}
	defer env.Close()
	res.LabStartFailures = env.StartFailures
	v, p, w, err := env.StartWriting(ctx, o.dsnExtra, benchkit.WriterOptions{Rate: o.idleRate})
	if err != nil {
		return err
	}
	res.TermBefore, res.PrimaryBefore, res.RaftLeaderBefore = v.Term, p.Name, v.RaftLeader
	applied := v.AppliedIndex
	start := time.Now()
	end := start.Add(o.idle)
	leader := v.RaftLeader
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	lastPrint := start
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			w.Stop()
			return ctx.Err()
		case <-time.After(time.Until(end)):
		case <-poll.C:
			cur, err := env.Show(ctx)
			if err != nil {
				benchkit.Logf("idle: %v", err)
				continue
			}
			if cur.RaftLeader != leader {
				benchkit.Logf("idle: raft leader changed: %q -> %q", leader, cur.RaftLeader)
				res.LeaderChanges++
				leader = cur.RaftLeader
			}
			if time.Since(lastPrint) >= 30*time.Second {
				lastPrint = time.Now()
				ok, failed := w.Counts()
				primary := "none"
				if np := env.Primary(cur); np != nil {
					primary = np.Name
				}
				benchkit.Logf("idle: %s of %s: %d INSERTs ok, %d failed; term %d, primary %s, raft leader %s",
					time.Since(start).Round(time.Second), o.idle, ok, failed, cur.Term, primary, cur.RaftLeader)
			}
		}
	}
	w.Stop()
	res.DurationS = benchkit.Seconds(time.Since(start))

	if v, err = env.Show(ctx); err != nil {
		return fmt.Errorf("after the run: %w", err)
	}
	res.TermAfter, res.RaftLeaderAfter = v.Term, v.RaftLeader
	if np := env.Primary(v); np != nil {
		res.PrimaryAfter = np.Name
	}
	evs, err := env.Events(ctx, "", applied)
	if err != nil {
		return fmt.Errorf("read the events: %w", err)
	}
	for _, ev := range evs {
		res.Events[ev.Type]++
	}
	res.FailoverEvents, res.PromoteEvents = res.Events[fsm.EventFailover], res.Events[fsm.EventStandbyPromote]
	samples := w.Samples()
	failures := w.Failures()
	res.InsertsOK, res.InsertsFailed = len(samples), len(failures)
	for i, f := range failures {
		if i == 5 {
			break
		}
		res.FirstFailures = append(res.FirstFailures, fmt.Sprintf("%s +%s %s: %s", f.At.Format("15:04:05.000"), f.At.Sub(start).Round(time.Millisecond), f.Op, f.Err))
	}
	if g, err := benchkit.LongestGap(samples); err == nil {
		res.LongestGapS = benchkit.Seconds(g.Length)
	}
	for _, port := range benchkit.DistinctPorts(samples) {
		res.Writers = append(res.Writers, env.NameByPort(port))
	}

	var types []string
	for t, n := range res.Events {
		types = append(types, fmt.Sprintf("%s=%d", t, n))
	}
	sort.Strings(types)
	fmt.Printf("duration            %.1f s\n", res.DurationS)
	fmt.Printf("term                %d -> %d\n", res.TermBefore, res.TermAfter)
	fmt.Printf("primary             %s -> %s\n", res.PrimaryBefore, res.PrimaryAfter)
	fmt.Printf("raft leader         %s -> %s (%d changes seen, polled every 5 s)\n", res.RaftLeaderBefore, res.RaftLeaderAfter, res.LeaderChanges)
	fmt.Printf("failover events     %d (expected 0)\n", res.FailoverEvents)
	fmt.Printf("standby_promote     %d (expected 0)\n", res.PromoteEvents)
	fmt.Printf("events during run   %s\n", orNone(strings.Join(types, " ")))
	fmt.Printf("INSERTs             %d ok, %d failed (expected 0 failed); writers: %s\n", res.InsertsOK, res.InsertsFailed, strings.Join(res.Writers, ","))
	fmt.Printf("longest gap         %.3f s between two successful INSERTs (nominal %.3f s)\n", res.LongestGapS, 1/o.idleRate)
	for _, f := range res.FirstFailures {
		fmt.Printf("  failed: %s\n", f)
	}
	if err := writeJSON(o.jsonPath, rep); err != nil {
		return err
	}
	var bad []string
	if res.TermAfter != res.TermBefore || res.FailoverEvents > 0 || res.PromoteEvents > 0 {
		bad = append(bad, fmt.Sprintf("%d failover(s) without a fault (term %d -> %d)", res.FailoverEvents, res.TermBefore, res.TermAfter))
	}
	if res.InsertsFailed > 0 {
		bad = append(bad, fmt.Sprintf("%d failed INSERT(s) without a fault", res.InsertsFailed))
	}
	if len(bad) > 0 {
		env.MarkFailed()
		env.DumpLogs(25)
		fmt.Fprintln(os.Stderr)
		return errors.New("unexpected in an idle run: " + strings.Join(bad, "; "))
	}
	fmt.Println("\nno failover, no failed INSERT")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
