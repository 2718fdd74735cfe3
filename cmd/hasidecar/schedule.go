package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// parseScheduleTime reads --scheduled: an RFC 3339 time
// (2026-12-02T18:30:00Z) or +DURATION from now (+10m, +90s). The result is
// absolute: the cluster stores a wall-clock time, not a delay.
func parseScheduleTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("--scheduled %s: a delay is +DURATION with a positive Go duration (+10m, +1h30m, +90s)", s)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--scheduled %s: give an RFC 3339 time with its zone (2026-12-02T18:30:00Z, 2026-12-02T19:30:00+01:00) or +DURATION (+10m)", s)
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("--scheduled %s: that time is in the past (now %s); nothing was scheduled", s, now.UTC().Format(time.RFC3339))
	}
	return t, nil
}

func printScheduled(resp *pb.ScheduleResponse) {
	for _, s := range resp.Checks {
		fmt.Println(s)
	}
	op := resp.GetOperation()
	fmt.Printf("scheduled: %s; in %s. Cancel with `hasidecar switchover --cancel`.\n",
		fsm.DescribeScheduled(op), time.Until(time.UnixMilli(op.GetAtUnixMs())).Round(time.Second))
}
