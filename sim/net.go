package sim

// Net is the model network between hosts: each direction of each link is
// up or cut (symmetric, one-way and bridge partitions are sets of cut
// directions), and every message gets a delay with jitter (which reorders
// messages), and may be dropped or duplicated.
type Net struct {
	w   *World
	n   int
	cut [][]int // cut[from][to]: how many faults cut this direction
	// base delay and jitter for every message; drop and dup probabilities.
	delay, jitter int64
	drop, dup     float64
	// slow[h]: extra delay on every message to or from host h.
	slow []int64
}

func newNet(w *World, n int) *Net {
	nt := &Net{w: w, n: n, delay: 500_000, jitter: 1_500_000, slow: make([]int64, n)}
	nt.cut = make([][]int, n)
	for i := range nt.cut {
		nt.cut[i] = make([]int, n)
	}
	return nt
}

func (nt *Net) up(from, to int) bool { return from == to || nt.cut[from][to] == 0 }

// send delivers fn to process p (on host to) after the link's delay, unless
// the link is cut at sending or at delivery, or the message is dropped.
func (nt *Net) send(from, to int, p procID, fn func()) {
	if !nt.up(from, to) {
		return
	}
	if from != to && nt.w.chance(nt.drop) {
		return
	}
	copies := 1
	if from != to && nt.w.chance(nt.dup) {
		copies = 2
	}
	for range copies {
		d := nt.delay + nt.w.between(0, nt.jitter) + nt.slow[from] + nt.slow[to]
		if from == to {
			d = 50_000
		}
		// Delivered to the receiving process: parked while it is frozen
		// (the kernel buffers), dropped if it crashed or restarted since
		// sending (its connections died) or the link is cut on arrival.
		nt.w.after(p, d, func() {
			if nt.up(from, to) {
				fn()
			}
		})
	}
}

func (nt *Net) heal() {
	for i := range nt.cut {
		for j := range nt.cut[i] {
			nt.cut[i][j] = 0
		}
	}
	nt.drop, nt.dup = 0, 0
	nt.jitter = 1_500_000
	for i := range nt.slow {
		nt.slow[i] = 0
	}
}
