package keeper

import (
	"strings"
	"testing"
	"time"
)

func TestDecideStorageFailover(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	healthy := func() (string, []string) { return "pg2", nil }
	none := func() (string, []string) {
		return "", []string{"pg2: did not answer", "pg3: priority 0"}
	}
	tests := []struct {
		name      string
		after     time.Duration
		fullSince time.Time
		standby   func() (string, []string)
		want      storageVerdict
		asked     bool   // standby must have been asked
		details   string // substring of the details ("" when want is wait)
	}{
		{name: "setting off, disk full for long", after: 0, fullSince: now.Add(-time.Hour), standby: healthy, want: storageWait},
		{name: "setting on, disk not full", after: 30 * time.Second, standby: healthy, want: storageWait},
		{name: "disk full shorter than the setting", after: 30 * time.Second, fullSince: now.Add(-29 * time.Second), standby: healthy, want: storageWait},
		{
			name: "disk full exactly the setting, healthy standby", after: 30 * time.Second, fullSince: now.Add(-30 * time.Second), standby: healthy,
			want: storageFailover, asked: true,
			details: `the disk has been full for 30s (failover_on_storage_failure 30s): fencing postgres and releasing the lease; "pg2" can take over`,
		},
		{
			name: "disk full longer, healthy standby", after: 5 * time.Second, fullSince: now.Add(-7 * time.Second), standby: healthy,
			want: storageFailover, asked: true, details: `"pg2" can take over`,
		},
		{
			name: "disk full longer, no healthy standby", after: 5 * time.Second, fullSince: now.Add(-time.Minute), standby: none,
			want: storageStay, asked: true,
			details: "the disk has been full for 1m0s (failover_on_storage_failure 5s): no healthy standby: staying primary (pg2: did not answer; pg3: priority 0)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			v, details := decideStorageFailover(tc.after, tc.fullSince, now, func() (string, []string) {
				asked = true
				return tc.standby()
			})
			if v != tc.want {
				t.Errorf("verdict %v, want %v (details %q)", v, tc.want, details)
			}
			if asked != tc.asked {
				t.Errorf("standbys asked: %t, want %t", asked, tc.asked)
			}
			if tc.details == "" && details != "" {
				t.Errorf("details %q, want none", details)
			}
			if !strings.Contains(details, tc.details) {
				t.Errorf("details %q, want it to contain %q", details, tc.details)
			}
		})
	}
}
