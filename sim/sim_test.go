package sim

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSim runs SCHEDULES seeded schedules (default 10000) from seed
// SIM_FIRST (default 1), or only SEED when given (with SIM_KEEP=i,j: only
// those fault events), with SIM_PLANT switching on a planted bug. `make
// sim` runs it.
func TestSim(t *testing.T) {
	if testing.Short() && os.Getenv("SEED") == "" && os.Getenv("SIM_SCHEDULE") == "" {
		t.Skip("make sim runs it")
	}
	plant := os.Getenv("SIM_PLANT")
	if plant != "" && !contains(Plants, plant) {
		t.Fatalf("SIM_PLANT=%s: not one of %s", plant, strings.Join(Plants, ", "))
	}
	opts := Options{Plant: plant}
	if name := os.Getenv("SIM_SCHEDULE"); name != "" {
		sc, ok := Named[name]
		if !ok {
			t.Fatalf("SIM_SCHEDULE=%s: no such schedule", name)
		}
		replaySchedule(t, sc, opts)
		return
	}
	if seed := os.Getenv("SEED"); seed != "" {
		replay(t, seed, opts)
		return
	}
	n := envInt(t, "SCHEDULES", 10000)
	// Each schedule allocates a few MB of short-lived closures: collect
	// less often.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	first := uint64(envInt(t, "SIM_FIRST", 1))
	start := time.Now()
	results := make([]Result, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	nextIdx := 0
	stop := false
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := nextIdx
				nextIdx++
				halt := stop
				mu.Unlock()
				if i >= n || halt {
					return
				}
				r := Run(Generate(first+uint64(i)), opts)
				results[i] = r
				if r.Violation != nil && plant != "" {
					mu.Lock()
					stop = true // a plant is caught: no need to go on
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	ran, bad, steps, worst := 0, 0, 0, int64(0)
	var firstBad *Result
	byName := map[string]int{}
	for i := range results {
		r := &results[i]
		if r.Seed == 0 {
			continue
		}
		ran++
		steps += r.Steps
		if r.Violation != nil {
			bad++
			byName[r.Violation.Name]++
			if firstBad == nil {
				firstBad = r
			}
		} else {
			worst = max(worst, r.Converge)
		}
	}
	fmt.Printf("sim: %d schedules, %d violations, %.1fs (%d steps, %d workers, longest convergence after healing %.2fs, bound %ds)\n",
		ran, bad, elapsed.Seconds(), steps, runtime.GOMAXPROCS(0), float64(worst)/1e9, convergeBound/sec)
	for _, k := range slices.Sorted(maps.Keys(byName)) {
		fmt.Printf("sim: violation %s: %d schedules\n", k, byName[k])
	}
	if firstBad != nil {
		sc := Generate(firstBad.Seed)
		v := firstBad.Violation
		fmt.Printf("sim: first failing seed %d: %s\n", firstBad.Seed, v)
		small := Shrink(sc, opts, v.Name)
		r := Run(small, opts)
		fmt.Printf("sim: shortest schedule (%d of %d fault events) still fails: %s\n%s", len(small.Faults), len(sc.Faults), r.Violation, small)
		keep := joinInts(small.indices())
		if keep == "" {
			keep = "none"
		}
		fmt.Printf("sim: replay: make sim SEED=%d SIM_KEEP=%s%s\n", firstBad.Seed, keep, optArgs(opts))
		t.Fail()
	}
}

func replay(t *testing.T, seed string, opts Options) {
	s, err := strconv.ParseUint(seed, 10, 64)
	if err != nil {
		t.Fatalf("SEED=%s: %v", seed, err)
	}
	sc := Generate(s)
	if k := os.Getenv("SIM_KEEP"); k != "" {
		var idx []int
		for _, f := range strings.Split(k, ",") {
			if f == "" || f == "none" {
				continue
			}
			i, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("SIM_KEEP=%s: %v", k, err)
			}
			idx = append(idx, i)
		}
		sc = sc.Keep(idx)
	}
	replaySchedule(t, sc, opts)
}

func replaySchedule(t *testing.T, sc *Schedule, opts Options) {
	fmt.Print(sc)
	opts.Trace = os.Getenv("SIM_TRACE") != ""
	r := Run(sc, opts)
	for _, l := range r.Trace {
		fmt.Println(l)
	}
	if r.Violation != nil {
		fmt.Printf("sim: 1 schedules, 1 violations: %s\n", r.Violation)
		t.Fail()
		return
	}
	fmt.Printf("sim: 1 schedules, 0 violations (converged %.2fs after healing, %d steps, %d acknowledged writes)\n", float64(r.Converge)/1e9, r.Steps, r.Acks)
}

func envInt(t *testing.T, k string, def int) int {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%s: not a count", k, v)
	}
	return n
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func joinInts(l []int) string {
	var p []string
	for _, i := range l {
		p = append(p, strconv.Itoa(i))
	}
	return strings.Join(p, ",")
}

func optArgs(o Options) string {
	s := ""
	if o.Plant != "" {
		s += " SIM_PLANT=" + o.Plant
	}
	return s
}
