package keeper

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The primary's side of "Lease and fencing" (DESIGN.md):
//
//  1. While the FSM names this node primary and holder of the lease, and its
//     Postgres answers (or is restarting within postgres.restart_timeout),
//     it renews every lease/3 (config.RenewalsPerLease). It notes its monotonic time t_send before
//     proposing; once the renewal commits it may accept writes until
//     t_send + lease.
//  2. The watchdog fences Postgres (stops it) fenceMargin before that
//     deadline when no renewal has extended it, and at once when the FSM
//     names another primary or a newer term.
//  3. A Postgres that crashed and did not come back within restart_timeout
//     makes the sidecar release the lease, so the leader fails over without
//     waiting for expiry.

type leaseState struct {
	mu       sync.Mutex
	term     uint64
	deadline time.Time // monotonic; zero: no valid lease
	// last: the latest deadline ever granted, never cleared: the guard
	// process kills Postgres shortly before it when the sidecar is frozen.
	last time.Time
	// length: the lease the latest renewal asked for (0: none yet).
	length time.Duration
}

// answerLog remembers when the latest LSN answers left, by token: a
// promotion decided on one of them gives this node a first lease from
// that moment (anchorLease).
type answerLog struct {
	mu   sync.Mutex
	next uint64 // the next token; starts at a per-process random nonce
	sent [answersKept]sentAnswer
	at   int // where the next one goes in sent
}

type sentAnswer struct {
	token uint64
	at    time.Time // Clock time, taken before the answer's status query
}

// answersKept: a decision is made on one of the last few answers (one per
// leader's ask; a leader asks at most every DecideInterval).
const answersKept = 16

// NoteAnswer is called when an LSN answer is being made, before its
// status query, so that the time kept is before the answer leaves: it
// returns the token the answer carries (LSNResponse.lease_anchor).
func (a *Keeper) NoteAnswer() uint64 {
	l := &a.answers
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	if l.next == 0 {
		l.next++ // 0 means "no anchor"
	}
	l.sent[l.at] = sentAnswer{token: l.next, at: a.clk.Now()}
	l.at = (l.at + 1) % answersKept
	return l.next
}

func (l *answerLog) sentAt(token uint64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sent {
		if token != 0 && s.token == token {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// anchorLease gives a node just promoted its first local lease without a
// renewal round trip: from the moment its LSN answer, on which the leader
// chose it, left (st.Lease.anchor names that answer) until then + the
// lease. That is as safe as a renewal sent at that moment: the leader got
// the answer after it was sent, and every voter applies the Promote after
// that, so each counts the new lease from later still (DESIGN.md "Lease
// and fencing"). The anchor is only ever a token this process handed out
// (a random nonce per process): an answer of an earlier run never
// matches. It reports whether the anchor was found.
func (a *Keeper) anchorLease(st *pb.ClusterState) bool {
	if _, holds := a.holdsLease(st); !holds {
		return false
	}
	l := st.GetLease()
	at, ok := a.answers.sentAt(l.GetAnchor())
	if !ok {
		return false
	}
	deadline := at.Add(min(time.Duration(l.GetDurationMs())*time.Millisecond, a.cfg.Timing.Lease.D()))
	if !deadline.After(a.clk.Now()) {
		return false // the decision took longer than the lease: renew
	}
	a.lease.mu.Lock()
	first := a.lease.term != st.Term
	if first || a.lease.deadline.Before(deadline) {
		a.lease.term = st.Term
		a.lease.deadline = deadline
		if deadline.After(a.lease.last) {
			a.lease.last = deadline
		}
	}
	a.lease.mu.Unlock()
	if first {
		a.logger.Info("first lease from the LSN answer the promotion was decided on", "term", st.Term, "valid_for", deadline.Sub(a.clk.Now()).Round(time.Millisecond))
	}
	return true
}

// fenceMargin is how long before its deadline the primary stops Postgres.
// A fast shutdown terminates every backend at once; the margin covers the
// watchdog's tick and the signal delivery.
func (a *Keeper) fenceMargin() time.Duration { return fenceMarginOf(a.leaseLength(a.log.State())) }

func fenceMargin(cfg *config.Config) time.Duration { return fenceMarginOf(cfg.Timing.Lease.D()) }

func fenceMarginOf(lease time.Duration) time.Duration { return min(500*time.Millisecond, lease/4) }

// leaseLength is the lease a renewal asks for: the cluster's timing.lease
// (a `config set` applies from the next renewal; the leader's expiry check
// uses the length the renewal carried), this node's own timing.lease on a
// cluster whose settings carry none.
func (a *Keeper) leaseLength(st *pb.ClusterState) time.Duration {
	if ms := st.GetSettings().GetLeaseMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return a.cfg.Timing.Lease.D()
}

// LeaseRoom is the shortest time a primary keeps its lease without a Raft
// leader (its last renewal sent up to lease/3 before the leader died, and
// it fences fenceMargin before the deadline), and need what replacing a
// dead leader takes: up to 2 × heartbeat_timeout until every surviving
// voter stops following it, plus an election and a commit.
func LeaseRoom(cfg *config.Config) (room, need time.Duration) {
	lease := cfg.Timing.Lease.D()
	return lease - cfg.Timing.RenewEvery() - fenceMargin(cfg), 2*cfg.Raft.HeartbeatTimeout.D() + 300*time.Millisecond
}

// LeaseValid reports whether this node holds a lease in the current term
// whose local deadline, less the fence margin, has not passed (Clock time):
// only then may its Postgres accept writes.
func (a *Keeper) LeaseValid() bool { return a.leaseValid() }

func (a *Keeper) leaseValid() bool {
	a.lease.mu.Lock()
	defer a.lease.mu.Unlock()
	return !a.lease.deadline.IsZero() && a.clk.Now().Before(a.lease.deadline.Add(-a.fenceMargin())) && a.lease.term == a.log.State().Term
}

func (a *Keeper) clearLease() {
	a.lease.mu.Lock()
	a.lease.deadline = time.Time{}
	a.lease.mu.Unlock()
	a.pokeWatchdog() // a writable primary is fenced at once
}

// holdsLease: the FSM names this node primary and lease holder in the
// current term.
func (a *Keeper) holdsLease(st *pb.ClusterState) (*pb.Node, bool) {
	me := fsm.NodeByName(st, a.cfg.Name)
	if me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return me, false
	}
	l := st.GetLease()
	return me, l.GetHolderId() == me.Id && l.GetTerm() == st.Term
}

// leaseLoop drives RenewLease: at the time it asks for, or at once when
// the FSM changes.
func (a *Keeper) leaseLoop(ctx context.Context) {
	for {
		next := a.RenewLease(ctx)
		select {
		case <-ctx.Done():
			return
		case <-a.log.Changed():
		case <-a.clk.After(next.Sub(a.clk.Now())):
		}
	}
}

// RenewLease is one pass of the lease keeper: while this node should hold
// the lease it renews every lease/3 (sooner after a renewal that found no
// leader), and it drops the local deadline at once when the FSM says
// otherwise. It returns when the next pass is due if nothing changes.
func (a *Keeper) RenewLease(ctx context.Context) (next time.Time) {
	st := a.log.State()
	every := a.leaseLength(st) / config.RenewalsPerLease
	if _, ok := a.holdsLease(st); !ok {
		a.clearLease()
	} else if a.anchorLease(st); !a.clk.Now().Before(a.renewNext) {
		a.renewNext = a.clk.Now().Add(every)
		if a.renewOrRelease(ctx, st, false) == renewFailed {
			// No leader or no quorum for now (a Raft leader that
			// died takes 1–2 s to replace): try again at once, so
			// that the renewal lands as soon as a leader is there
			// instead of a third of a lease later — with the
			// default 4 s lease the difference decides whether a
			// healthy primary gets fenced.
			a.renewNext = a.clk.Now().Add(renewRetry)
		}
	}
	now := a.clk.Now()
	wait := a.renewNext.Sub(now)
	if wait <= 0 || wait > every {
		wait = every
	}
	return now.Add(wait)
}

// renewNow renews at once (after a claim or a promotion decision).
func (a *Keeper) renewNow(ctx context.Context) {
	st := a.log.State()
	if _, ok := a.holdsLease(st); ok {
		a.renewOrRelease(ctx, st, false)
	}
}

// renewOutcome says what renewOrRelease did.
type renewOutcome int

const (
	renewSkipped renewOutcome = iota // nothing proposed (unhealthy, stopping, released)
	renewed                          // committed: the deadline moved
	renewRefused                     // the FSM refused it: the lease is gone
	renewFailed                      // not committed (no leader, no quorum): retry soon
)

// renewRetry is the pause before another attempt after renewFailed (each
// attempt itself retries for up to lease/3 while no leader is known; a
// renewal forwarded to a leader that loses the role is abandoned within
// the forwarding layer's leader poll and sent to the new leader at once,
// over a connection that is not left in reconnect backoff: node/'s
// Node.Propose, peerPool.forLeader behind Log.Propose).
const renewRetry = 50 * time.Millisecond

// renewOrRelease renews (or releases) the lease of term st.Term; final is
// the last renewal of a sidecar that leaves Postgres running (detach),
// made although it is stopping.
func (a *Keeper) renewOrRelease(ctx context.Context, st *pb.ClusterState, final bool) renewOutcome {
	me, _ := a.holdsLease(st)
	o := a.observed()
	if a.stopping.Load() && !final {
		return renewSkipped
	}
	if a.storageFenced(st.Term) {
		// Fenced for a storage failure (storage.go): never writable again
		// in this term; (re)try the release until it commits.
		a.release(ctx, st, me, "storage failure: the disk stayed full for failover_on_storage_failure")
		return renewSkipped
	}
	if a.pg.Running() {
		// Renew only while Postgres answers its health query (observe
		// runs every monitor interval); a hung Postgres lets the lease
		// lapse, the watchdog fences it and the leader fails over.
		if stale, since := healthStale(a.clk.Now(), a.healthyAt.Load(), 3*a.cfg.Timing.MonitorInterval.D()); stale && since == 0 {
			a.logger.Warn("not renewing the lease: postgres has not answered its health query yet")
			return renewSkipped
		} else if stale {
			a.logger.Warn("not renewing the lease: postgres has not answered its health query", "for", since.Round(time.Millisecond))
			return renewSkipped
		}
	} else if sw := st.Switchover; sw != nil && sw.FromId == me.Id {
		return renewSkipped // stopped for a switchover: the lease goes with the promotion
	} else {
		// Not running: keep the lease while a start or a restart in place
		// may still succeed, then let it go.
		a.crashMu.Lock()
		crashed := a.crashedAt
		a.crashMu.Unlock()
		if rt := a.cfg.Postgres.RestartTimeout.D(); !crashed.IsZero() && a.clk.Now().Sub(crashed) >= rt {
			if !st.Lease.GetReleased() || a.clk.Now().Sub(crashed) < reclaimAfter(rt, a.leaseLength(st)) {
				a.release(ctx, st, me, "postgres crashed and did not restart within postgres.restart_timeout")
				return renewSkipped
			}
			// Released a restart_timeout ago, and still the primary of
			// this term: the leader found no standby to promote (in
			// synchronous mode none may hold every acknowledged write).
			// Waiting on would leave the cluster without a primary for
			// good (the simulator's seed 1004). Reclaim the lease and
			// restart in place: the renewal un-releases it and bumps its
			// serial, so a promotion decided on the released serial is
			// refused by the FSM; if the restart fails again the lease is
			// released again a restart_timeout later.
			a.crashMu.Lock()
			a.crashedAt = a.clk.Now()
			a.crashMu.Unlock()
			a.logger.Warn("the lease was released but no standby took over: reclaiming it to restart postgres in place", "term", st.Term)
		}
	}
	lease := a.leaseLength(st)
	tSend := a.clk.Now()
	cmd := &pb.RenewLease{NodeId: me.Id, Term: st.Term, FlushLsn: max(o.GetFlushLsn(), o.GetReceiveLsn()), Timeline: o.GetTimeline(), DurationMs: lease.Milliseconds()}
	if o.GetInRecovery() && st.Lease.GetTimeline() != 0 {
		// A candidate about to promote keeps the timeline it was chosen on.
		cmd.Timeline = st.Lease.GetTimeline()
	}
	if capped := a.capLease(tSend, lease); capped && a.pg.Running() {
		// The guard too, before the renewal can commit: a sidecar frozen
		// right after proposing must not leave the guard on the longer
		// deadline.
		if err := a.armGuard(); err != nil {
			a.logger.Warn("lease renewal not sent: the guard did not take the shorter deadline", "error", err)
			return renewFailed
		}
	}
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_RenewLease{RenewLease: cmd}}, lease/3)
	if err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			a.logger.Warn("lease renewal refused", "term", st.Term, "error", err)
			a.clearLease()
			return renewRefused
		}
		a.logger.Warn("lease renewal failed", "term", st.Term, "error", err)
		return renewFailed
	}
	a.lease.mu.Lock()
	// An answer to an older, longer renewal counts with the newest length.
	lease = min(lease, a.lease.length)
	if a.lease.term != st.Term || a.lease.deadline.Before(tSend.Add(lease)) {
		a.lease.term = st.Term
		a.lease.deadline = tSend.Add(lease)
		a.lease.last = a.lease.deadline
	}
	a.lease.mu.Unlock()
	a.pokeWatchdog() // the guard learns the new deadline
	return renewed
}

// capLease prepares a renewal of length lease sent at tSend: when it is
// shorter than the previous renewal's (config set timing.lease), the local
// deadline and the guard's (last) are cut to tSend + lease first. Once the
// renewal commits — even unanswered — the leader counts the shorter length
// from its apply, which is after tSend, so a deadline from the longer lease
// could outlast the leader's expiry. It reports whether it cut either.
// A longer lease changes nothing here: it extends the deadline only once
// its renewal is answered, like any renewal.
func (a *Keeper) capLease(tSend time.Time, lease time.Duration) (capped bool) {
	a.lease.mu.Lock()
	defer a.lease.mu.Unlock()
	if a.lease.length == 0 || lease < a.lease.length {
		limit := tSend.Add(lease)
		if a.lease.deadline.After(limit) {
			a.lease.deadline, capped = limit, true
		}
		if a.lease.last.After(limit) {
			a.lease.last, capped = limit, true
		}
	}
	a.lease.length = lease
	return capped
}

// reclaimAfter is how long after its crash a primary that released its
// lease waits before it reclaims it when no standby took over: twice
// restart_timeout, and never less than restart_timeout + a lease, so that
// the leader always has a whole lease after the release to promote a
// standby. (With restart_timeout 0, 2 × 0 reclaimed at once: the released
// lease was taken back before the leader could fail over, and the crashed
// primary restarted in place — TestFailoverPostgresCrash, 2026-12-02.)
func reclaimAfter(restartTimeout, lease time.Duration) time.Duration {
	return max(2*restartTimeout, restartTimeout+lease)
}

// healthStale reports whether the last answer to the health query
// (healthyAt, unix nanoseconds; 0: none yet) is older than limit at now,
// and how old it is — 0 when there was none, so that nobody logs the time
// since 1970.
func healthStale(now time.Time, healthyAt int64, limit time.Duration) (stale bool, since time.Duration) {
	if healthyAt == 0 {
		return true, 0
	}
	since = max(now.Sub(time.Unix(0, healthyAt)), 0)
	return since > limit, since
}

func (a *Keeper) release(ctx context.Context, st *pb.ClusterState, me *pb.Node, reason string) {
	if st.Lease.GetReleased() {
		return
	}
	a.clearLease()
	if a.pg.Running() {
		return // never release while Postgres may still accept writes
	}
	if _, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_ReleaseLease{ReleaseLease: &pb.ReleaseLease{NodeId: me.Id, Term: st.Term, Reason: reason}}}, 2*time.Second); err != nil {
		a.logger.Warn("release lease", "error", err)
		return
	}
	a.logger.Warn("lease released", "term", st.Term, "reason", reason)
}

// watchdog drives WatchdogTick at the time it asks for (the fence time of
// the lease while this node is a writable primary, else a slow heartbeat),
// at once when Postgres exits, the FSM changes or another step pokes it
// (a renewal moved the deadline, an action started, stopped or promoted
// Postgres). It runs apart from the reconciler so that a long action (a
// clone, a rewind) never delays a fence. The timer is the Clock's: on the
// real clock a monotonic timer, so a sidecar frozen past the fence time
// (SIGSTOP, a stalled VM) fences the moment it runs again.
func (a *Keeper) watchdog(ctx context.Context) {
	for {
		next := a.WatchdogTick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-a.exited():
		case <-a.log.Changed():
		case <-a.dogWake:
		case <-a.clk.After(next.Sub(a.clk.Now())):
		}
	}
}

// pokeWatchdog asks for a WatchdogTick now (Run's watchdog; a driver by
// steps calls WatchdogTick after every other step instead). Never blocks.
func (a *Keeper) pokeWatchdog() {
	select {
	case a.dogWake <- struct{}{}:
	default:
	}
}

// WatchdogTick is one pass of the watchdog: it notes an exit nobody asked
// for, keeps the guard process beside the postmaster armed with the lease
// deadline, and fences a Postgres that may accept writes without a valid
// lease. It returns when it is due again if nothing else happens: the
// moment the lease stops being valid (its deadline less the fence margin)
// on a writable primary, else a monitor interval on (watchdogIdle).
func (a *Keeper) WatchdogTick(ctx context.Context) (next time.Time) {
	running := a.pg.Running()
	if a.wasRunning && !running {
		a.noteExit(ctx)
	}
	a.guardTick()
	a.wasRunning = running
	next = a.clk.Now().Add(a.watchdogIdle())
	if !running || a.standbyMode.Load() || a.stopping.Load() || a.shutDownExiting.Load() {
		return next
	}
	if !a.leaseValid() {
		a.fence(ctx, "the lease is not held or about to expire")
		return next
	}
	if at := a.fenceAt(); at.Before(next) {
		next = at
	}
	return next
}

// watchdogIdle is the watchdog's heartbeat when no fence time is near: a
// monitor interval. Everything that needs it sooner wakes it (exits, FSM
// changes, pokeWatchdog) or is its fence time.
func (a *Keeper) watchdogIdle() time.Duration { return a.cfg.Timing.MonitorInterval.D() }

// fenceAt is the moment leaseValid turns false by time alone: the lease's
// local deadline less the fence margin (zero: no lease).
func (a *Keeper) fenceAt() time.Time {
	a.lease.mu.Lock()
	defer a.lease.mu.Unlock()
	if a.lease.deadline.IsZero() {
		return time.Time{}
	}
	return a.lease.deadline.Add(-a.fenceMargin())
}

// noteExit records an exit of Postgres that nobody asked for. With
// postgres.restart_timeout 0 a primary gives its lease up at once: no
// restart in place, the leader fails over without waiting for expiry.
func (a *Keeper) noteExit(ctx context.Context) {
	if a.stopping.Load() || a.expectStop() {
		return
	}
	a.crashMu.Lock()
	first := a.crashedAt.IsZero()
	if first {
		a.crashedAt = a.clk.Now()
	}
	a.crashMu.Unlock()
	if !first {
		return
	}
	a.logger.Warn("postgres exited unexpectedly")
	st := a.log.State()
	if me, ok := a.holdsLease(st); ok && a.cfg.Postgres.RestartTimeout.D() == 0 {
		a.clearLease()
		a.goAside(func(ctx context.Context) {
			a.release(ctx, st, me, "postgres crashed (postgres.restart_timeout is 0: no restart in place)")
		})
	}
}

// fence stops Postgres now: a fast shutdown (every backend terminated at
// once, no new connection) and, if that does not finish within a second, an
// immediate one. Never a cancel (see CHAOS.md).
func (a *Keeper) fence(ctx context.Context, reason string) {
	if !a.pg.Running() {
		return
	}
	a.logger.Warn("fencing postgres", "reason", reason)
	if a.hooks.Fenced != nil {
		a.hooks.Fenced()
	}
	a.markExpectedStop()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	err := a.pg.Stop(sctx, pgctl.StopFast)
	cancel()
	if err != nil || a.pg.Running() {
		// Even when ctx ended (shutting down): the fence must finish.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := a.pg.Stop(ictx, pgctl.StopImmediate); err != nil {
			a.pg.Kill()
		}
		cancel()
	}
	st := a.log.State()
	a.goAside(func(ctx context.Context) {
		a.recordEvent(ctx, fsm.EventFence, true, st.Term, "postgres stopped: "+reason)
	})
}
