package clusterconf

import "testing"

// FuzzParseDetails: config history reads event texts from the replicated
// log: whatever they hold, ParseDetails never panics, and what it accepts
// it writes back the same way.
func FuzzParseDetails(f *testing.F) {
	f.Add(Details(3, []Diff{{Key: "timing.lease", Old: "4s", New: "2s", Had: true, Has: true}}))
	f.Add(Details(1, []Diff{{Key: "postgresql.parameters.work_mem", New: "8MB", Has: true}, {Key: "postgresql.hba", Old: `["a; b → c"]`, Had: true}}))
	f.Add("version 1: ")
	f.Add("garbled")
	f.Fuzz(func(t *testing.T, s string) {
		v, diffs, err := ParseDetails(s)
		if err != nil || len(diffs) == 0 {
			return
		}
		back := Details(v, diffs)
		v2, diffs2, err := ParseDetails(back)
		if err != nil || v2 != v || len(diffs2) != len(diffs) {
			t.Fatalf("%q → %q does not read back: %v", s, back, err)
		}
		for i := range diffs {
			if diffs[i] != diffs2[i] {
				t.Fatalf("%q → %q: diff %d %+v, then %+v", s, back, i, diffs[i], diffs2[i])
			}
		}
	})
}
