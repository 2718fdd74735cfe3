package node

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
		room, need := leaseRoom(cfg)
		if room != tc.room || (room >= need) != tc.enough {
			t.Errorf("lease %s, heartbeat %s: room %s, need %s; want room %s, enough %v", tc.lease, tc.heartbeat, room, need, tc.room, tc.enough)
		}
	}
}
