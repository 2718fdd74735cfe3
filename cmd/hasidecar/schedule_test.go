package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseScheduleTime: RFC 3339 with a zone and +DURATION are absolute
// times in the future; anything else, a past time and a non-positive delay
// are refused with what to write instead.
func TestParseScheduleTime(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"2026-12-02T18:30:00Z", now.Add(30 * time.Minute), ""},
		{"2026-12-02T19:30:00+01:00", now.Add(30 * time.Minute), ""},
		{" +10m ", now.Add(10 * time.Minute), ""},
		{"+1h30m", now.Add(90 * time.Minute), ""},
		{"+0s", time.Time{}, "positive"},
		{"+-5m", time.Time{}, "positive"},
		{"+soon", time.Time{}, "positive"},
		{"2026-12-02T17:59:59Z", time.Time{}, "in the past"},
		{"2026-12-02T18:00:00Z", time.Time{}, "in the past"},
		{"2026-12-02 18:30", time.Time{}, "RFC 3339"},
		{"2026-12-02T18:30:00", time.Time{}, "RFC 3339"},
		{"", time.Time{}, "RFC 3339"},
	} {
		got, err := parseScheduleTime(tc.in, now)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && !got.Equal(tc.want):
			t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
		}
	}
}
