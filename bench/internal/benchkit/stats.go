package benchkit

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Stats summarise a list of durations.
type Stats struct {
	N      int           `json:"n"`
	Median time.Duration `json:"-"`
	Min    time.Duration `json:"-"`
	Max    time.Duration `json:"-"`
	Mean   time.Duration `json:"-"`

	MedianS float64 `json:"median_s"`
	MinS    float64 `json:"min_s"`
	MaxS    float64 `json:"max_s"`
	MeanS   float64 `json:"mean_s"`
}

// Summarize computes median (the mean of the middle two for an even count),
// min, max and mean; all zero for an empty list.
func Summarize(ds []time.Duration) Stats {
	s := Stats{N: len(ds)}
	if len(ds) == 0 {
		return s
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	s.Mean = sum / time.Duration(len(sorted))
	if m := len(sorted) / 2; len(sorted)%2 == 1 {
		s.Median = sorted[m]
	} else {
		s.Median = (sorted[m-1] + sorted[m]) / 2
	}
	s.MedianS, s.MinS, s.MaxS, s.MeanS = Seconds(s.Median), Seconds(s.Min), Seconds(s.Max), Seconds(s.Mean)
	return s
}

// String is "median X s  min X s  max X s  mean X s (n=N)".
func (s Stats) String() string {
	if s.N == 0 {
		return "no successful trial"
	}
	return fmt.Sprintf("median %s  min %s  max %s  mean %s  (n=%d)", Secs(s.Median), Secs(s.Min), Secs(s.Max), Secs(s.Mean), s.N)
}

// Secs formats a duration as seconds with millisecond precision.
func Secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// Seconds is d in seconds rounded to the millisecond (for JSON).
func Seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// Table prints rows under a header, columns padded to their widest cell.
func Table(w io.Writer, header []string, rows [][]string) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(c + strings.Repeat(" ", width[i]-len(c)))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
