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
}

// CleanlyShutDown reports whether the cluster was shut down cleanly (as a
// primary or as a standby).
func (d *ControlData) CleanlyShutDown() bool {
	return d.State == "shut down" || d.State == "shut down in recovery"
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
	if err != nil {
		return nil, err
	}
	return &d, nil
}
