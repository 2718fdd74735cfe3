package keeper

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// failover_on_storage_failure: a primary that cannot commit for a set time
// gives its role up when a standby can take it.
//
// "Cannot commit" is the disk-full condition of disk.go held continuously:
// free space below postgres.disk_full_threshold on the data directory's
// (or pg_wal's) filesystem, or a write that failed for lack of space. No
// write is added to probe it: the sidecar writes nowhere in the user's
// databases, and a probe table would be a write path of its own to user
// data; with free space below the threshold Postgres is at most one WAL
// segment or checkpoint from failing every commit, and a failed write
// (53100, ENOSPC) is the direct evidence.
//
// Once it held for the setting, the primary asks the promotable standbys
// for their LSNs and runs the leader's own choice (pickCandidate). With a
// standby that would be chosen and is streaming, it fences its Postgres
// (as the watchdog does), records storage_failure and releases its lease:
// the leader fails over as after a crash. With none, it records
// storage_failure (not ok) once per condition and stays primary: a primary
// that a full disk made read-only beats no primary. It renews no lease in
// the term it fenced in, so it never restarts writable; once the FSM names
// another primary it rejoins through the rewind path, which waits for disk
// space (plan.go).

// storageVerdict is what a primary does about its disk.
type storageVerdict int

const (
	storageWait     storageVerdict = iota // off, not full, or not full long enough
	storageFailover                       // fence, release: a standby takes over
	storageStay                           // no healthy standby: stay primary
)

func (v storageVerdict) String() string {
	return [...]string{"wait", "failover", "stay"}[v]
}

// decideStorageFailover decides from the setting (after; 0: off), when the
// disk became full (fullSince; zero: not full) and now. standby is asked
// only once the condition held for after: it names the standby that would
// be promoted, or "" with the reasons none would. details is the event's
// text.
func decideStorageFailover(after time.Duration, fullSince, now time.Time, standby func() (name string, reasons []string)) (v storageVerdict, details string) {
	if after <= 0 || fullSince.IsZero() {
		return storageWait, ""
	}
	held := now.Sub(fullSince)
	if held < after {
		return storageWait, ""
	}
	why := fmt.Sprintf("the disk has been full for %s (failover_on_storage_failure %s)", held.Round(100*time.Millisecond), after)
	name, reasons := standby()
	if name == "" {
		details := why + ": no healthy standby: staying primary"
		if len(reasons) > 0 {
			details += " (" + strings.Join(reasons, "; ") + ")"
		}
		return storageStay, details
	}
	return storageFailover, fmt.Sprintf("%s: fencing postgres and releasing the lease; %q can take over", why, name)
}

// storageFenced: this primary fenced itself for a storage failure in term.
func (a *Keeper) storageFenced(term uint64) bool {
	a.disk.mu.Lock()
	defer a.disk.mu.Unlock()
	return a.disk.fencedTerm != 0 && a.disk.fencedTerm == term
}

// checkStorage runs the storage-failure decision aside (it asks the
// standbys over the network) when this node is the running primary and
// holds the lease; one check at a time.
func (a *Keeper) checkStorage(ctx context.Context, o observed) {
	st := a.log.State()
	after := time.Duration(st.Settings.GetStorageFailureFailoverMs()) * time.Millisecond
	if after <= 0 || !o.Running || o.InRecovery || a.stopping.Load() {
		return
	}
	me, ok := a.holdsLease(st)
	if !ok || st.Lease.GetReleased() || st.Switchover != nil {
		return
	}
	a.disk.mu.Lock()
	fullSince := a.disk.fullSince
	if fullSince.IsZero() || a.disk.checking || a.disk.fencedTerm == st.Term || a.clk.Now().Sub(fullSince) < after {
		a.disk.mu.Unlock()
		return
	}
	a.disk.checking = true
	a.disk.mu.Unlock()
	a.goAside(func(ctx context.Context) {
		defer func() {
			a.disk.mu.Lock()
			a.disk.checking = false
			a.disk.mu.Unlock()
		}()
		a.storageFailure(ctx, st, me, after, fullSince)
	})
}

func (a *Keeper) storageFailure(ctx context.Context, st *pb.ClusterState, me *pb.Node, after time.Duration, fullSince time.Time) {
	v, details := decideStorageFailover(after, fullSince, a.clk.Now(), func() (string, []string) {
		return a.healthyStandby(ctx, st)
	})
	switch v {
	case storageStay:
		a.disk.mu.Lock()
		noted := a.disk.stayNoted.Equal(fullSince)
		a.disk.stayNoted = fullSince
		a.disk.mu.Unlock()
		if !noted {
			a.logger.Error("storage failure: no standby can take over, staying primary", "details", details)
			a.recordEvent(ctx, fsm.EventStorageFailure, false, st.Term, details)
		}
	case storageFailover:
		if cur := a.log.State(); cur.Term != st.Term || cur.Lease.GetHolderId() != me.Id {
			return // the cluster moved on while the standbys were asked
		}
		a.disk.mu.Lock()
		a.disk.fencedTerm = st.Term // from now on no renewal in this term
		a.disk.mu.Unlock()
		a.logger.Error("storage failure: failing over", "details", details, "term", st.Term)
		a.fence(ctx, "storage failure: "+details)
		a.recordEvent(ctx, fsm.EventStorageFailure, true, st.Term, details)
		a.release(ctx, a.log.State(), me, "storage failure: "+details)
	}
}

// healthyStandby names the standby the leader would promote now, when it
// streams: the leader's own choice (pickCandidate: promotable, healthy, in
// recovery on the primary's timeline, within maximum_lag_on_failover or in
// the synchronous set). "" with the reasons when there is none.
func (a *Keeper) healthyStandby(ctx context.Context, st *pb.ClusterState) (string, []string) {
	best, _, reasons := fsm.PickCandidate(st, st.Lease, func(nodes []*pb.Node) []fsm.Candidate {
		out := make([]fsm.Candidate, len(nodes))
		answers := a.peers.LSNs(ctx, nodes, st.Term, max(a.cfg.Timing.MonitorInterval.D(), 500*time.Millisecond))
		for i, n := range nodes {
			out[i].Node = n
			if i < len(answers) {
				out[i].Answer = answers[i]
			}
		}
		return out
	})
	if best == nil {
		return "", reasons
	}
	if s := best.Answer.GetPostgres().GetWalReceiverStatus(); s != "streaming" {
		return "", append(reasons, fmt.Sprintf("%s: not streaming (wal receiver %q)", best.Node.Name, s))
	}
	return best.Node.Name, nil
}
