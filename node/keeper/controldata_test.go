package keeper

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	"github.com/hasidecar/hasidecar/pgctl"
)

// TestRaiseToControlData: a standby starts with every hot-standby setting
// at least as high as its pg_control holds (the primary's last values), so
// that lowering one cluster-wide cannot keep a restarted standby down;
// nothing else changes, and a value Postgres would reject is left to it.
func TestRaiseToControlData(t *testing.T) {
	control := map[string]int64{"max_connections": 150, "max_worker_processes": 8, "max_wal_senders": 10,
		"max_prepared_transactions": 0, "max_locks_per_transaction": 64}
	for _, tc := range []struct {
		name     string
		settings map[string]string
		control  map[string]int64
		want     map[string]string
	}{
		{"lowered below pg_control: raised", map[string]string{"max_connections": "120", "work_mem": "8MB"}, control,
			map[string]string{"max_connections": "150", "work_mem": "8MB"}},
		{"at or above pg_control: kept", map[string]string{"max_connections": "150", "max_wal_senders": "20"}, control,
			map[string]string{"max_connections": "150", "max_wal_senders": "20"}},
		{"unset: Postgres's default 100 is below 150", map[string]string{"work_mem": "8MB"}, control,
			map[string]string{"max_connections": "150", "work_mem": "8MB"}},
		{"unset, pg_control at the defaults: nothing added", map[string]string{}, map[string]int64{"max_connections": 100, "max_locks_per_transaction": 64}, map[string]string{}},
		{"not a number: left to Postgres", map[string]string{"max_connections": "many"}, control, map[string]string{"max_connections": "many"}},
		{"pg_control without the lines", map[string]string{"max_connections": "120"}, nil, map[string]string{"max_connections": "120"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := newFakePG()
			pg.hotStandby = tc.control
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			k := newTestKeeper(t, testConfig(t, "pg2"), clk, fakelog.New(clk), pg)
			in := maps.Clone(tc.settings)
			got := k.raiseToControlData(t.Context(), tc.settings)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("settings %v, want %v", got, tc.want)
			}
			if !maps.Equal(tc.settings, in) {
				t.Fatalf("the caller's map changed: %v", tc.settings)
			}
		})
	}
}

// TestHotStandbyParametersKnownToPgctl: every setting config names as a
// hot-standby one has a Postgres default in pgctl (and so a pg_controldata
// line it reads).
func TestHotStandbyParametersKnownToPgctl(t *testing.T) {
	if got := slices.Sorted(maps.Keys(pgctl.HotStandbyDefaults)); !slices.Equal(got, slices.Sorted(slices.Values(config.HotStandbyParameters))) {
		t.Fatalf("pgctl.HotStandbyDefaults %v, config.HotStandbyParameters %v", got, config.HotStandbyParameters)
	}
}
