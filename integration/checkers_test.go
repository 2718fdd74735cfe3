package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The checkers of the failover and chaos tests, on fabricated histories
// (CHAOS.md checker 6): each must catch the fault it exists for and pass a
// correct history.

func TestProbeChecker(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := func(node string, callMs, doneMs int) probeRecord {
		return probeRecord{node: node, call: t0.Add(time.Duration(callMs) * time.Millisecond), done: t0.Add(time.Duration(doneMs) * time.Millisecond)}
	}
	for _, tc := range []struct {
		name     string
		recs     []probeRecord
		expected []string
		order    string
		want     []string // substrings of the problems, in order; none: clean
	}{
		{name: "one primary", recs: []probeRecord{w("pg1", 0, 5), w("pg1", 50, 55)}, order: "[pg1]"},
		{name: "clean handover", recs: []probeRecord{w("pg1", 0, 5), w("pg1", 50, 55), w("pg2", 4000, 4005), w("pg2", 4050, 4052)}, order: "[pg1 pg2]"},
		{name: "unsorted input, clean", recs: []probeRecord{w("pg2", 4000, 4005), w("pg1", 0, 5)}, order: "[pg1 pg2]"},
		{
			name:  "old primary writes again after the new one did",
			recs:  []probeRecord{w("pg1", 0, 5), w("pg2", 100, 105), w("pg1", 200, 205)},
			order: "[pg1 pg2 pg1]",
			want:  []string{"two writable primaries: pg1 accepted a write"},
		},
		{
			name:  "two writes accepted at the same moment",
			recs:  []probeRecord{w("pg1", 0, 50), w("pg2", 10, 20)},
			order: "[pg2 pg1]",
			want:  []string{"writes accepted at the same moment on pg2"},
		},
		{
			name:     "switchover there and back, as expected",
			recs:     []probeRecord{w("pg1", 0, 5), w("pg2", 100, 105), w("pg1", 200, 205)},
			expected: []string{"pg1", "pg2", "pg1"},
			order:    "[pg1 pg2 pg1]",
		},
		{
			name:     "switchover that never happened",
			recs:     []probeRecord{w("pg1", 0, 5), w("pg1", 100, 105)},
			expected: []string{"pg1", "pg2"},
			order:    "[pg1]",
			want:     []string{"writable nodes in order [pg1], want [pg1 pg2]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, problems := probeViolations(tc.recs, tc.expected)
			if fmt.Sprint(order) != tc.order {
				t.Errorf("order %v, want %s", order, tc.order)
			}
			assertProblems(t, problems, tc.want)
		})
	}
}

func TestDecisionChecker(t *testing.T) {
	idx := uint64(0)
	ev := func(typ, node string, term uint64, ok bool) *pb.Event {
		idx++
		return &pb.Event{Type: typ, NodeName: node, Term: term, Ok: ok, Index: idx, Details: typ + " " + node}
	}
	for _, tc := range []struct {
		name       string
		decisions  []*pb.Event
		promotions []*pb.Event
		term       uint64
		want       []string
	}{
		{name: "no fault", term: 1},
		{
			name:       "failover then switchover",
			decisions:  []*pb.Event{ev("failover", "pg2", 2, true), ev("switchover", "pg1", 3, true)},
			promotions: []*pb.Event{ev("standby_promote", "pg2", 2, true), ev("standby_promote", "pg1", 3, true)},
			term:       3,
		},
		{
			name:       "a failed promotion and a refused switchover are not decisions",
			decisions:  []*pb.Event{ev("failover", "pg2", 2, true), ev("switchover", "pg3", 2, false)},
			promotions: []*pb.Event{ev("standby_promote", "pg2", 2, false), ev("standby_promote", "pg2", 2, true)},
			term:       2,
		},
		{
			name:       "promotion without a decision",
			promotions: []*pb.Event{ev("standby_promote", "pg3", 2, true)},
			term:       1,
			want:       []string{"pg3 promoted in term 2 without a committed decision"},
		},
		{
			name:       "promotion of another node than decided",
			decisions:  []*pb.Event{ev("failover", "pg2", 2, true)},
			promotions: []*pb.Event{ev("standby_promote", "pg3", 2, true)},
			term:       2,
			want:       []string{"pg3 promoted in term 2 without", "pg2 in term 2 was never carried out"},
		},
		{
			name:       "two promotions in one term",
			decisions:  []*pb.Event{ev("failover", "pg2", 2, true)},
			promotions: []*pb.Event{ev("standby_promote", "pg2", 2, true), ev("standby_promote", "pg2", 2, true)},
			term:       2,
			want:       []string{"two promotions in term 2"},
		},
		{
			name:       "two decisions in one term",
			decisions:  []*pb.Event{ev("failover", "pg2", 2, true), ev("failover", "pg3", 2, true)},
			promotions: []*pb.Event{ev("standby_promote", "pg3", 2, true)},
			term:       2,
			want:       []string{"in term 2, after term 2"},
		},
		{
			name:      "decision never carried out",
			decisions: []*pb.Event{ev("failover", "pg2", 2, true)},
			term:      2,
			want:      []string{"never carried out"},
		},
		{
			name:       "a term moved without a decision",
			decisions:  []*pb.Event{ev("failover", "pg2", 2, true)},
			promotions: []*pb.Event{ev("standby_promote", "pg2", 2, true)},
			term:       3,
			want:       []string{"the last decision is in term 2, the cluster is in term 3"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := decisionViolations(tc.decisions, tc.promotions, tc.term)
			assertProblems(t, problems, tc.want)
		})
	}
}

// assertProblems checks that the checker reported exactly the wanted
// problems (each want a substring of one problem, in order).
func assertProblems(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("problems %q, want %d matching %q", got, len(want), want)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d: %q does not say %q", i, got[i], want[i])
		}
	}
}
