package sim

import (
	"slices"
	"testing"
)

// A seed replays bit for bit: the same trace and the same number of steps
// (full traces for 10 seeds, step and acknowledgement counts for 100).
func TestDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 100; seed++ {
		trace := seed <= 10
		a := Run(Generate(seed), Options{Trace: trace})
		b := Run(Generate(seed), Options{Trace: trace})
		if a.Steps != b.Steps || !slices.Equal(a.Trace, b.Trace) || a.Acks != b.Acks {
			t.Fatalf("seed %d: two runs differ: %d/%d steps, %d/%d trace lines, %d/%d acks", seed, a.Steps, b.Steps, len(a.Trace), len(b.Trace), a.Acks, b.Acks)
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
		{plantNoDriftMargin, 113, []int{1}, "two-writable"},
		{plantPromoteEarly, 1, []int{0}, "promote-before-commit"},
		{plantNoFence, 1, []int{0}, "no-convergence"},
		{plantNoCommitGate, 29, []int{3}, "two-writable"},
		{plantSyncCountMinusOne, 147, []int{0}, "lost-acked-write"},
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

// The defect found in node/keeper/sync.go (manageSync), now fixed:
// emptying the synchronous set narrowed Postgres first — to the lease gate,
// i.e. asynchronous commits — and committed the empty set after; an
// isolated primary that could not commit it acknowledged writes the standby
// promoted next lacked. manageSync now commits an empty set before Postgres
// commits through the gate alone: the schedule that found it must pass.
func TestDefectSyncNarrowEmpty(t *testing.T) {
	if r := Run(Named["sync-narrow-empty"], Options{}); r.Violation != nil {
		t.Errorf("the sync-narrow-empty schedule: %v, want no violation (the fix in manageSync)", r.Violation)
	}
	// The random seeds that found it: emptying the set (3640), and
	// widening it from empty with the FSM first (9628: a member named
	// before it held what the primary had acknowledged without it).
	for _, c := range []struct {
		seed uint64
		keep []int
	}{{3640, []int{1, 2}}, {9628, []int{0, 1, 2}}} {
		if r := Run(Generate(c.seed).Keep(c.keep), Options{}); r.Violation != nil {
			t.Errorf("SEED=%d SIM_KEEP=%v: %v, want no violation", c.seed, c.keep, r.Violation)
		}
	}
}

// The defect found with the lease gate off, now fixed: the keeper started
// Postgres as primary and its guard was started and armed only by the next
// watchdog tick; a sidecar frozen in between left a writable Postgres that
// nothing fenced (two writable primaries once a standby was promoted).
// The keeper now arms the guard before the postmaster starts, and before
// pg_promote (node/keeper/guard.go armGuard), and the invariant
// unguarded-writable checks it after every step. Seed 1936 fails that
// invariant with the arming before the start taken out; 609 (a sidecar
// that crashed during the start) and 4243 (a guard frozen while the
// sidecar started Postgres) failed it on the simulator's model until the
// model was right.
func TestDefectUnguardedStart(t *testing.T) {
	for _, c := range []struct {
		seed uint64
		keep []int
	}{{1936, []int{0}}, {609, []int{0}}, {4243, []int{2, 3, 4}}} {
		if r := Run(Generate(c.seed).Keep(c.keep), Options{}); r.Violation != nil {
			t.Errorf("SEED=%d SIM_KEEP=%v: %v, want no violation", c.seed, c.keep, r.Violation)
		}
	}
}

// TestSyncCountPlantCaught: k = 2 of 3 with the primary and the one
// up-to-date standby dying together. As built, the failover's n − k + 1
// answers hold every acknowledged write; the sync-count-minus-one plant
// (the model Postgres acknowledging ANY 2 once one standby flushed) loses
// writes and the lost-acked-write check, which covers k > 1, sees it.
func TestSyncCountPlantCaught(t *testing.T) {
	sc := Named["sync-k2-lagging-pair"]
	if r := Run(sc, Options{}); r.Violation != nil {
		t.Errorf("sync-k2-lagging-pair as built: %v", r.Violation)
	}
	if r := Run(sc, Options{Plant: plantSyncCountMinusOne}); r.Violation == nil || r.Violation.Name != "lost-acked-write" {
		t.Errorf("sync-k2-lagging-pair with SIM_PLANT=%s: %v, want lost-acked-write", plantSyncCountMinusOne, r.Violation)
	}
	for _, name := range []string{"sync-k2-crash", "sync-strict-k2"} {
		if r := Run(Named[name], Options{}); r.Violation != nil {
			t.Errorf("%s: %v", name, r.Violation)
		}
	}
}
