package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Schedule is everything a seed draws before the run: the cluster's shape
// and mode, each host's clock drift, and the fault events.
type Schedule struct {
	Seed     uint64
	Data     int  // data nodes (plus one witness)
	Sync     bool // synchronous mode
	Count    int  // synchronous_count k (0: 1)
	Strict   bool // synchronous: strict
	NoGate   bool // postgres.disable_lease_gate
	DriftPPM []int64
	Faults   []Fault
}

// Fault is one fault event: it starts at At and heals Dur later.
type Fault struct {
	Index  int // in the seed's full schedule (SIM_KEEP names these)
	At     int64
	Dur    int64
	Kind   string
	Target string // primary, leader, standby, witness, any
	P      float64
	Extra  int64
}

func (f Fault) String() string {
	s := fmt.Sprintf("#%d %7.3fs +%.3fs %-14s %s", f.Index, float64(f.At)/1e9, float64(f.Dur)/1e9, f.Kind, f.Target)
	if f.P > 0 {
		s += fmt.Sprintf(" p=%.2f", f.P)
	}
	if f.Extra > 0 {
		s += fmt.Sprintf(" %dms", f.Extra/ms)
	}
	return s
}

func (sc *Schedule) String() string {
	var b strings.Builder
	mode := "asynchronous"
	if sc.Sync {
		mode = "synchronous"
	}
	gate := "lease gate on"
	if sc.NoGate {
		gate = "lease gate off"
	}
	if sc.Sync && sc.Strict {
		mode = "synchronous strict"
	}
	if sc.Sync && sc.Count > 1 {
		mode += fmt.Sprintf(" ANY %d", sc.Count)
	}
	fmt.Fprintf(&b, "seed %d: %d data nodes + witness, %s, %s, clock drift ppm %v\n", sc.Seed, sc.Data, mode, gate, sc.DriftPPM)
	for _, f := range sc.Faults {
		fmt.Fprintf(&b, "  %s\n", f)
	}
	return b.String()
}

var faultKinds = []string{
	"partition", "oneway-in", "oneway-out", "bridge", "split", "netchaos", "slowlink",
	"crash", "pgcrash", "pause-sidecar", "pause-host", "slow-fsync", "slow-apply", "slow-promote", "behind",
}

// maxDriftPPM: each clock runs within ±4.5 % of true time, so two clocks
// differ in rate by at most 1.045/0.955 ≈ 9.4 %, inside the 10 % margin.
const maxDriftPPM = 45_000

// Generate draws the schedule of a seed.
func Generate(seed uint64) *Schedule {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	sc := &Schedule{Seed: seed, Data: 2 + r.IntN(2), Sync: r.IntN(10) < 3}
	sc.NoGate = r.IntN(10) < 2
	for range sc.Data + 1 {
		var p int64
		switch r.IntN(3) {
		case 0:
			p = maxDriftPPM
		case 1:
			p = -maxDriftPPM
		default:
			p = r.Int64N(2*maxDriftPPM+1) - maxDriftPPM
		}
		sc.DriftPPM = append(sc.DriftPPM, p)
	}
	n := 1 + r.IntN(6)
	targets := []string{"primary", "primary", "primary", "leader", "standby", "witness", "any"}
	for i := range n {
		f := Fault{Index: i, At: sec + r.Int64N(19*sec), Kind: faultKinds[r.IntN(len(faultKinds))], Target: targets[r.IntN(len(targets))]}
		if sc.NoGate && f.Kind == "pause-host" {
			f.Kind = "pause-sidecar" // a known limit without the gate (docs/SIMULATOR.md)
		}
		f.Dur = 200*ms + r.Int64N(8*sec)
		switch f.Kind {
		case "netchaos":
			f.P = 0.05 + r.Float64()*0.3
			f.Extra = r.Int64N(30 * ms)
		case "slowlink":
			f.Extra = 20*ms + r.Int64N(200*ms)
		case "slow-fsync":
			f.Extra = 10*ms + r.Int64N(200*ms)
		case "slow-apply":
			f.Extra = 50*ms + r.Int64N(500*ms)
		case "slow-promote":
			f.Extra = sec + r.Int64N(4*sec)
		case "pgcrash":
			f.Dur = 0
		}
		sc.Faults = append(sc.Faults, f)
	}
	// Synchronous schedules with a count and strict mode: drawn from a
	// stream of their own, so that the draws above stay what they were.
	// One in three synchronous schedules runs 4 data nodes (3 standbys)
	// with k = 2; strict in one of three synchronous schedules.
	if sc.Sync {
		r2 := rand.New(rand.NewPCG(seed, 0x5c0de))
		if r2.IntN(3) == 0 {
			sc.Data, sc.Count = 4, 2
			for len(sc.DriftPPM) < sc.Data+1 {
				sc.DriftPPM = append(sc.DriftPPM, r2.Int64N(2*maxDriftPPM+1)-maxDriftPPM)
			}
		}
		sc.Strict = r2.IntN(3) == 0
	}
	return sc
}

// Keep returns the schedule with only the faults whose Index is listed.
func (sc *Schedule) Keep(idx []int) *Schedule {
	out := *sc
	out.Faults = nil
	for _, f := range sc.Faults {
		for _, i := range idx {
			if f.Index == i {
				out.Faults = append(out.Faults, f)
			}
		}
	}
	return &out
}

func (sc *Schedule) indices() []int {
	var out []int
	for _, f := range sc.Faults {
		out = append(out, f.Index)
	}
	return out
}

// resolve names the host a fault hits, at the moment it starts.
func (s *Sim) resolve(t string) *Host {
	data := s.hosts[:s.cfg.data]
	pick := func(hs []*Host) *Host { return hs[s.w.rng.IntN(len(hs))] }
	prim := s.hosts[0]
	for _, h := range data {
		if h.pg.writable() {
			prim = h
		}
	}
	switch t {
	case "primary":
		return prim
	case "leader":
		for _, h := range s.hosts {
			if h.raft.role == roleLeader {
				return h
			}
		}
		return pick(s.hosts)
	case "standby":
		var hs []*Host
		for _, h := range data {
			if h != prim {
				hs = append(hs, h)
			}
		}
		return pick(hs)
	case "witness":
		return s.hosts[len(s.hosts)-1]
	}
	if name, ok := strings.CutPrefix(t, "host:"); ok { // named schedules: one host
		for _, h := range s.hosts {
			if h.name == name {
				return h
			}
		}
	}
	return pick(s.hosts)
}

func (s *Sim) cutBoth(a, b int, d int) {
	s.net.cut[a][b] += d
	s.net.cut[b][a] += d
}

// fire starts a fault and schedules its end.
func (s *Sim) fire(f Fault) {
	h := s.resolve(f.Target)
	s.trace("fault %s on %s", f, h.name)
	end := func(fn func()) { s.w.after(worldProc, f.Dur, fn) }
	n := len(s.hosts)
	switch f.Kind {
	case "partition":
		for o := range n {
			if o != h.id {
				s.cutBoth(h.id, o, 1)
			}
		}
		end(func() {
			for o := range n {
				if o != h.id {
					s.cutBoth(h.id, o, -1)
				}
			}
		})
	case "oneway-in", "oneway-out":
		in := f.Kind == "oneway-in"
		set := func(d int) {
			for o := range n {
				if o == h.id {
					continue
				}
				if in {
					s.net.cut[o][h.id] += d
				} else {
					s.net.cut[h.id][o] += d
				}
			}
		}
		set(1)
		end(func() { set(-1) })
	case "bridge":
		// h is cut from everyone but one bridge host, which still talks
		// to both sides.
		b := (h.id + 1 + s.w.rng.IntN(n-1)) % n
		set := func(d int) {
			for o := range n {
				if o != h.id && o != b {
					s.cutBoth(h.id, o, d)
				}
			}
		}
		set(1)
		end(func() { set(-1) })
	case "split":
		side := make([]bool, n)
		for i := range side {
			side[i] = s.w.rng.IntN(2) == 0
		}
		side[h.id] = true
		set := func(d int) {
			for a := range n {
				for b := range n {
					if side[a] && !side[b] {
						s.cutBoth(a, b, d)
					}
				}
			}
		}
		set(1)
		end(func() { set(-1) })
	case "netchaos":
		s.net.drop, s.net.dup, s.net.jitter = f.P, f.P/2, 1_500_000+f.Extra
		end(func() { s.net.drop, s.net.dup, s.net.jitter = 0, 0, 1_500_000 })
	case "slowlink":
		s.net.slow[h.id] = f.Extra
		end(func() { s.net.slow[h.id] = 0 })
	case "crash":
		s.crashSidecar(h)
		end(func() { s.restartSidecar(h) })
	case "pgcrash":
		if h.pg != nil && h.pg.running {
			s.trace("crash postgres %s", h.name)
			h.pg.crash()
		}
	case "pause-sidecar":
		s.w.freeze(h.sidecar)
		end(func() { s.w.thaw(h.sidecar) })
	case "pause-host":
		s.w.freeze(h.sidecar)
		s.w.freeze(h.pgProc)
		s.w.freeze(h.guardProc)
		end(func() {
			s.w.thaw(h.sidecar)
			s.w.thaw(h.pgProc)
			s.w.thaw(h.guardProc)
		})
	case "slow-fsync":
		h.fsyncDelay = f.Extra
		end(func() { h.fsyncDelay = 0 })
	case "slow-apply":
		h.applyDelay = f.Extra
		end(func() { h.applyDelay = 200_000 })
	case "slow-promote":
		h.promoteDelay = f.Extra
		end(func() { h.promoteDelay = 0 })
	case "behind":
		if h.pg != nil {
			h.pg.stallUntil = s.w.now + f.Dur
		}
	}
}

// Named hand-written schedules (SIM_SCHEDULE=name replays one).
var Named = map[string]*Schedule{
	// The defect in the keeper's manageSync (docs/SIMULATOR.md, "Defects
	// found"): the primary is cut off, then its only synchronous standby's
	// sidecar (and with it its Postgres) dies and comes back 3 s later.
	"sync-narrow-empty": {Seed: 7, Data: 2, Sync: true, DriftPPM: []int64{0, 0, 0}, Faults: []Fault{
		{Index: 0, At: 11200 * ms, Dur: 3 * sec, Kind: "crash", Target: "standby"},
		{Index: 1, At: 11 * sec, Dur: 12 * sec, Kind: "partition", Target: "primary"},
	}},
	// k = 2 of 3 standbys: the primary's host dies while a standby lags,
	// then a second standby's sidecar dies (the failover needs 2 of 3).
	"sync-k2-crash": {Seed: 11, Data: 4, Sync: true, Count: 2, DriftPPM: []int64{0, 0, 0, 0, 0}, Faults: []Fault{
		{Index: 0, At: 5 * sec, Dur: 3 * sec, Kind: "behind", Target: "standby"},
		{Index: 1, At: 6 * sec, Dur: 6 * sec, Kind: "crash", Target: "primary"},
		{Index: 2, At: 6500 * ms, Dur: 2 * sec, Kind: "crash", Target: "standby"},
	}},
	// k = 2 of 3: pg3 and pg4 stop receiving, then the primary and pg2
	// die together. ANY 2 makes commits wait from the stall on, so the
	// two answers a failover needs (n − k + 1) hold every acknowledged
	// write; the sync-count-minus-one plant (ANY 2 acknowledged as ANY 1)
	// loses those pg2 alone held.
	"sync-k2-lagging-pair": {Seed: 13, Data: 4, Sync: true, Count: 2, DriftPPM: []int64{0, 0, 0, 0, 0}, Faults: []Fault{
		{Index: 0, At: 3 * sec, Dur: 6 * sec, Kind: "behind", Target: "host:pg3"},
		{Index: 1, At: 3 * sec, Dur: 6 * sec, Kind: "behind", Target: "host:pg4"},
		{Index: 2, At: 3400 * ms, Dur: 10 * sec, Kind: "crash", Target: "host:pg1"},
		{Index: 3, At: 3400 * ms, Dur: 10 * sec, Kind: "crash", Target: "host:pg2"},
	}},
	// strict, k = 2: two standbys die; commits wait, then complete.
	"sync-strict-k2": {Seed: 12, Data: 4, Sync: true, Count: 2, Strict: true, DriftPPM: []int64{0, 0, 0, 0, 0}, Faults: []Fault{
		{Index: 0, At: 4 * sec, Dur: 5 * sec, Kind: "crash", Target: "host:pg3"},
		{Index: 1, At: 4500 * ms, Dur: 5 * sec, Kind: "crash", Target: "host:pg4"},
		{Index: 2, At: 12 * sec, Dur: 4 * sec, Kind: "crash", Target: "primary"},
	}},
}
