package keeper

import (
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
)

// TestLeaseRoom: the startup warning fires exactly when a Raft leader's
// death can outlast what the lease leaves.
func TestLeaseRoom(t *testing.T) {
	for _, tc := range []struct {
		lease, heartbeat time.Duration
		room             time.Duration
		enough           bool
	}{
		{4 * time.Second, 500 * time.Millisecond, 2166666667 * time.Nanosecond, true}, // the defaults
		{4 * time.Second, time.Second, 2166666667 * time.Nanosecond, false},           // hashicorp/raft's 1 s: a leader's death could fence
		{8 * time.Second, time.Second, 4833333334 * time.Nanosecond, true},
		{2 * time.Second, 500 * time.Millisecond, 833333334 * time.Nanosecond, false},
		{2 * time.Second, 250 * time.Millisecond, 833333334 * time.Nanosecond, true},
		{time.Second, 100 * time.Millisecond, 416666667 * time.Nanosecond, false}, // lease/4 margin
	} {
		cfg := &config.Config{Timing: config.TimingConfig{Lease: config.Duration(tc.lease)}, Raft: config.RaftConfig{HeartbeatTimeout: config.Duration(tc.heartbeat)}}
		room, need := LeaseRoom(cfg)
		if room != tc.room || (room >= need) != tc.enough {
			t.Errorf("lease %s, heartbeat %s: room %s, need %s; want room %s, enough %v", tc.lease, tc.heartbeat, room, need, tc.room, tc.enough)
		}
	}
}

// TestHealthStale: no answer yet is stale without an age (the log once
// said "for=498931h41m33.515s", the time since 1970).
func TestHealthStale(t *testing.T) {
	now := time.Unix(1_767_225_600, 0)
	limit := 3 * time.Second
	for _, tc := range []struct {
		name      string
		healthyAt int64
		stale     bool
		since     time.Duration
	}{
		{"never answered", 0, true, 0},
		{"just answered", now.UnixNano(), false, 0},
		{"within the limit", now.Add(-2 * time.Second).UnixNano(), false, 2 * time.Second},
		{"at the limit", now.Add(-limit).UnixNano(), false, limit},
		{"over the limit", now.Add(-limit - time.Millisecond).UnixNano(), true, limit + time.Millisecond},
		{"answered long ago", now.Add(-time.Hour).UnixNano(), true, time.Hour},
		{"clock stepped back", now.Add(time.Second).UnixNano(), false, 0},
	} {
		stale, since := healthStale(now, tc.healthyAt, limit)
		if stale != tc.stale || since != tc.since {
			t.Errorf("%s: stale %v since %s, want %v %s", tc.name, stale, since, tc.stale, tc.since)
		}
	}
}
