package pgctl

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// ControlData is the part of pg_controldata's output hasidecar uses.
type ControlData struct {
	SystemIdentifier uint64
	// State: "in production", "shut down", "shut down in recovery",
	// "in archive recovery", "in crash recovery", "shutting down", "starting up".
	State                  string
	TimelineID             uint32 // latest checkpoint's TimeLineID
	CheckpointLSN          uint64
	RedoLSN                uint64
	MinRecoveryEndLSN      uint64
	MinRecoveryEndTimeline uint32
	// HotStandby: the hot-standby settings of the primary whose WAL this
	// data directory last replayed (or its own), by GUC name; a standby
	// refuses to start with a lower value. Absent when the output lacks
	// them.
	HotStandby map[string]int64
}

// controlDataHotStandby names the pg_controldata lines of the settings a
// hot standby must run at least as high as its primary
// (config.HotStandbyParameters), by GUC name.
var controlDataHotStandby = map[string]string{
	"max_connections":           "max_connections setting",
	"max_worker_processes":      "max_worker_processes setting",
	"max_wal_senders":           "max_wal_senders setting",
	"max_prepared_transactions": "max_prepared_xacts setting",
	"max_locks_per_transaction": "max_locks_per_xact setting",
}

// HotStandbyDefaults are PostgreSQL 15's defaults of those settings: what
// a server runs when no configuration file sets them.
var HotStandbyDefaults = map[string]int64{
	"max_connections":           100,
	"max_worker_processes":      8,
	"max_wal_senders":           10,
	"max_prepared_transactions": 0,
	"max_locks_per_transaction": 64,
}

// StateShutDown and StateShutDownInRecovery are the cluster states of a
// clean shutdown of a primary and of a standby, in pg_controldata's words
// (ControlData.State, ControlFile.State).
const (
	StateShutDown           = "shut down"
	StateShutDownInRecovery = "shut down in recovery"
)

// CleanlyShutDown reports whether the cluster was shut down cleanly (as a
// primary or as a standby).
func (d *ControlData) CleanlyShutDown() bool {
	return d.State == StateShutDown || d.State == StateShutDownInRecovery
}

// ControlData runs pg_controldata -D DataDir (LC_ALL=C) and parses it. It
// works whether Postgres runs or not.
func (c *Controller) ControlData(ctx context.Context) (*ControlData, error) {
	res, err := c.run(ctx, runSpec{name: "pg_controldata", args: []string{"-D", c.opts.DataDir}, quiet: true})
	if err != nil {
		return nil, fmt.Errorf("pg_controldata -D %s: %w", c.opts.DataDir, err)
	}
	d, err := ParseControlData(res.stdout)
	if err != nil {
		return nil, fmt.Errorf("pg_controldata -D %s: %w", c.opts.DataDir, err)
	}
	return d, nil
}

// ParseControlData parses pg_controldata output produced with LC_ALL=C.
func ParseControlData(out string) (*ControlData, error) {
	fields := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	var d ControlData
	var err error
	need := func(key string) string {
		v, ok := fields[key]
		if !ok && err == nil {
			err = fmt.Errorf("pg_controldata output lacks %q", key)
		}
		return v
	}
	u64 := func(key string) uint64 {
		v := need(key)
		n, e := strconv.ParseUint(v, 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("pg_controldata %q: %w", key, e)
		}
		return n
	}
	lsn := func(key string) uint64 {
		v := need(key)
		n, e := ParseLSN(v)
		if e != nil && err == nil {
			err = fmt.Errorf("pg_controldata %q: %w", key, e)
		}
		return n
	}
	d.SystemIdentifier = u64("Database system identifier")
	d.State = need("Database cluster state")
	d.TimelineID = uint32(u64("Latest checkpoint's TimeLineID"))
	d.CheckpointLSN = lsn("Latest checkpoint location")
	d.RedoLSN = lsn("Latest checkpoint's REDO location")
	d.MinRecoveryEndLSN = lsn("Minimum recovery ending location")
	d.MinRecoveryEndTimeline = uint32(u64("Min recovery ending loc's timeline"))
	for name, line := range controlDataHotStandby {
		if v, e := strconv.ParseInt(fields[line], 10, 64); e == nil {
			if d.HotStandby == nil {
				d.HotStandby = map[string]int64{}
			}
			d.HotStandby[name] = v
		}
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}
