package keeper

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// diskWatch follows whether the local disk is full: the statfs sample of
// every observation plus the last write that failed for lack of space. It
// records disk_full when the condition starts and disk_ok when it ends,
// once each (a failed proposal is retried on the next sample).
type diskWatch struct {
	mu          sync.Mutex
	writeErr    string    // the last disk-full write error
	writeErrAt  time.Time // when it happened
	reported    bool      // the state last committed as an event (false: ok)
	proposing   bool      // an event proposal is in flight
	lastMeasure string    // the last statfs error logged (log once)
	// fullSince: when the disk became full, continuously since (zero: not
	// full). failover_on_storage_failure counts from it.
	fullSince time.Time
	// fencedTerm: the term in which this primary fenced its Postgres for a
	// storage failure (0: none); it renews no lease in that term (lease.go).
	// Cleared when the disk is no longer full.
	fencedTerm uint64
	// checking: a storage-failure check is in flight; stayNoted: the
	// fullSince for which "no healthy standby: staying primary" was
	// recorded (once per condition).
	checking  bool
	stayNoted time.Time
}

// diskFullReason decides, from one sample, whether the disk is full: free
// space on the data directory's filesystem (or pg_wal's, when separate)
// below threshold, or a write that failed for lack of space (writeErr, ""
// when none recently). It returns "" when the disk is not full, else why.
// A filesystem not measured (total 0) counts as not full by space.
func diskFullReason(ds pgctl.DiskSpace, threshold uint64, writeErr string) string {
	switch {
	case ds.Data.Total > 0 && ds.Data.Free < threshold:
		return fmt.Sprintf("%d bytes free on the data directory's filesystem (threshold %d)", ds.Data.Free, threshold)
	case ds.SeparateWAL && ds.WAL.Total > 0 && ds.WAL.Free < threshold:
		return fmt.Sprintf("%d bytes free on pg_wal's filesystem (threshold %d)", ds.WAL.Free, threshold)
	case writeErr != "":
		return "a write failed for lack of space: " + writeErr
	}
	return ""
}

// diskTransition says which event, if any, a sample calls for: reported is
// the state last recorded, full the state now.
func diskTransition(reported, full bool) (event string) {
	switch {
	case full && !reported:
		return fsm.EventDiskFull
	case !full && reported:
		return fsm.EventDiskOK
	}
	return ""
}

// noteWriteError remembers err when it says the disk is full (a failed
// health query or reconciler action).
func (a *Keeper) noteWriteError(err error) {
	if !pgctl.IsDiskFull(err) {
		return
	}
	a.disk.mu.Lock()
	defer a.disk.mu.Unlock()
	a.disk.writeErr, a.disk.writeErrAt = err.Error(), a.clk.Now()
}

// sampleDisk measures the disk, fills the status's disk fields and records
// a disk_full / disk_ok event on a change. A disk-full write error counts
// for 10 monitor intervals: the space it lacked may be freed and taken
// again between two samples.
func (a *Keeper) sampleDisk(ctx context.Context, status *pb.PostgresStatus) {
	threshold := uint64(a.cfg.Postgres.DiskFullThreshold)
	ds, err := a.pg.DiskSpace()
	a.disk.mu.Lock()
	if err != nil {
		if msg := err.Error(); msg != a.disk.lastMeasure {
			a.logger.Warn("measuring free disk space", "error", err)
			a.disk.lastMeasure = msg
		}
	} else {
		a.disk.lastMeasure = ""
	}
	writeErr := ""
	if !a.disk.writeErrAt.IsZero() && a.clk.Now().Sub(a.disk.writeErrAt) < 10*a.cfg.Timing.MonitorInterval.D() {
		writeErr = a.disk.writeErr
	}
	reason := diskFullReason(ds, threshold, writeErr)
	status.FreeBytes, status.TotalBytes = ds.Data.Free, ds.Data.Total
	if ds.SeparateWAL {
		status.WalFreeBytes, status.WalTotalBytes = ds.WAL.Free, ds.WAL.Total
	}
	status.DiskFull, status.DiskFullReason, status.DiskFullThresholdBytes = reason != "", reason, threshold
	switch {
	case reason == "":
		if a.disk.fencedTerm != 0 {
			a.logger.Info("disk no longer full: the storage-failure fence is lifted", "term", a.disk.fencedTerm)
		}
		a.disk.fullSince, a.disk.fencedTerm = time.Time{}, 0
	case a.disk.fullSince.IsZero():
		a.disk.fullSince = a.clk.Now()
	}
	typ := diskTransition(a.disk.reported, reason != "")
	if typ == "" || a.disk.proposing || a.self() == nil {
		a.disk.mu.Unlock()
		return
	}
	a.disk.proposing = true
	a.disk.mu.Unlock()
	details := "disk full: " + reason
	if typ == fsm.EventDiskOK {
		details = fmt.Sprintf("disk no longer full: %d bytes free on the data directory's filesystem (threshold %d)", ds.Data.Free, threshold)
		a.logger.Info("disk no longer full", "free_bytes", ds.Data.Free, "threshold", threshold)
	} else {
		a.logger.Error("disk full", "reason", reason, "free_bytes", ds.Data.Free, "threshold", threshold)
	}
	// Proposed aside: the reconciler does not wait for the log.
	a.goAside(func(ctx context.Context) {
		ok := a.proposeEvent(ctx, typ, details)
		a.disk.mu.Lock()
		defer a.disk.mu.Unlock()
		a.disk.proposing = false
		if ok {
			a.disk.reported = typ == fsm.EventDiskFull
		}
	})
}

// proposeEvent commits an event about this node in the current term; it
// reports whether the event was committed.
func (a *Keeper) proposeEvent(ctx context.Context, typ, details string) bool {
	me := a.self()
	if me == nil {
		return false
	}
	ok := typ != fsm.EventDiskFull
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_RecordEvent{RecordEvent: &pb.RecordEvent{NodeId: me.Id, Type: typ, Ok: ok, Term: a.log.State().Term, Details: details}}}, 5*time.Second)
	if err != nil {
		a.logger.Warn("record event", "type", typ, "error", err)
		return false
	}
	return true
}
