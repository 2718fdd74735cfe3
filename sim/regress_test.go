package sim

import (
	"slices"
	"testing"
)

// A seed replays bit for bit: the same trace and the same number of steps.
func TestDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		sc := Generate(seed)
		a := Run(sc, Options{Trace: true})
		b := Run(Generate(seed), Options{Trace: true})
		if a.Steps != b.Steps || !slices.Equal(a.Trace, b.Trace) || a.Acks != b.Acks {
			t.Fatalf("seed %d: two runs differ: %d/%d steps, %d/%d trace lines", seed, a.Steps, b.Steps, len(a.Trace), len(b.Trace))
		}
	}
}

// The planted bugs are caught on the seeds make sim found for them; each
// shrunk schedule passes without its plant.
func TestPlantsCaught(t *testing.T) {
	for _, c := range []struct {
		plant     string
		seed      uint64
		keep      []int
		violation string
	}{
		{plantNoDriftMargin, 370, []int{1, 4, 5}, "two-writable"},
		{plantPromoteEarly, 1, []int{0}, "promote-before-commit"},
		{plantNoFence, 1, []int{0}, "no-convergence"},
		{plantNoCommitGate, 105, []int{0}, "two-writable"},
	} {
		sc := Generate(c.seed).Keep(c.keep)
		r := Run(sc, Options{Plant: c.plant})
		if r.Violation == nil || r.Violation.Name != c.violation {
			t.Errorf("SIM_PLANT=%s SEED=%d SIM_KEEP=%v: got %v, want violation %s", c.plant, c.seed, c.keep, r.Violation, c.violation)
		}
		if r := Run(sc, Options{}); r.Violation != nil {
			t.Errorf("SEED=%d SIM_KEEP=%v without a plant: %v", c.seed, c.keep, r.Violation)
		}
	}
}

// The defect found in node/sync.go: emptying the synchronous set by
// narrowing Postgres first (to the lease gate) lets an isolated primary
// acknowledge writes the standby promoted next lacks. The sim's keeper
// commits the empty set first; SIM_AS_BUILT=sync-narrow plays the
// product's order.
func TestDefectSyncNarrowEmpty(t *testing.T) {
	sc := Generate(2922).Keep([]int{0, 5})
	if r := Run(sc, Options{AsBuiltSyncNarrow: true}); r.Violation == nil || r.Violation.Name != "lost-acked-write" {
		t.Errorf("as built: got %v, want violation lost-acked-write", r.Violation)
	}
	if r := Run(sc, Options{}); r.Violation != nil {
		t.Errorf("FSM first: %v", r.Violation)
	}
}
