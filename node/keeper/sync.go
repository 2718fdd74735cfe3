package keeper

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/clusterconf"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Synchronous mode (settings.synchronous, synchronous_count k). The primary
// runs with
//
//	synchronous_standby_names = 'ANY k_p ("pg2", "pg3", …)'
//
// naming a set S_p of its standbys, and the FSM holds the committed
// synchronous set S_f with its committed count k_f (ClusterState
// sync_standbys, sync_count). The invariant, at every moment:
//
//	S_p ⊆ S_f  and  k_p ≥ k_f
//
// and every write acknowledged so far is on at least k_f members of S_f.
// A commit is acknowledged only once k_p members of S_p — hence k_f
// members of S_f — flushed it.
//
// Failover rule (fsm.ChooseSync): with n = |S_f|, the leader waits for
// answers from n − k_f + 1 members and promotes the most advanced of them.
// Why that holds every acknowledged write: a write w is on a set H ⊆ S_f
// with |H| ≥ k_f, so at most n − k_f members lack it; n − k_f + 1 answers
// cannot all come from those, so some answer A holds w. WAL is one stream:
// whoever received more than A (on the primary's timeline) holds
// everything A holds, so the most advanced answer holds w. (k_f = 1: every
// member must answer, as before.) If k_p < k_f for a moment, a write could
// be on k_p members only and n − k_f + 1 answers might all miss it: hence
// the order of every step below.
//
// The primary moves (S_f, k_f) one step per round (manageSync); the target
// count is k in strict mode and min(k, |S_p|) in on mode (syncTarget), and
// Postgres always runs k_p = max(k_f, target), so raising shows in
// Postgres before the FSM and lowering after it:
//
//   - widening (S_f ≠ ∅): commit S_f ∪ {m} with the same k_f first, then
//     Postgres names m (the members already in the set hold every
//     acknowledged write on k_f of them; more members only add answers
//     that are not needed).
//   - lowering k (k_f → k' < k_f): commit k' first — a failover then asks
//     for more answers, n − k' + 1, which is safe since every write is on
//     k_f > k' members — then Postgres runs ANY k'. Postgres first would
//     acknowledge writes on k' members while the FSM still lets a failover
//     decide on n − k_f + 1 answers: a loss.
//   - raising k (k_f → k' > k_f): Postgres first runs ANY k' (k_p = k' >
//     k_f, safe); once it runs with it (SHOW synchronous_standby_names), the
//     primary's flush position F is an upper bound of every write
//     acknowledged under k_f (stepCaughtUp records it), and every later
//     acknowledgement waits for k' members. When k' members of S_f flushed
//     F, each old write is on k' members too; only then commit k'.
//     Committing k' first would let a failover decide on n − k' + 1 answers
//     while old writes are on k_f < k' members only: raising is NOT safe to
//     apply to Postgres after the commit.
//   - narrowing (remove m): first lower k_f to what the rest can give
//     (on mode: min(k, |S_f − m|)), as above; then Postgres drops m (k_p =
//     k_f); once it runs with that and k_f of the remaining members flushed
//     F, commit S_f − m. Until then the FSM still names m, whose answer a
//     failover may then not need.
//   - the last members go (on mode): commit the empty set first, then
//     Postgres commits without them (the lease gate alone); the other order
//     lost writes in the simulator (sync-narrow-empty). Until the commit,
//     Postgres still waits: writes block, none is lost.
//   - widening from S_f = ∅: Postgres first names the new members with
//     ANY target; once it runs with it and target of them flushed F, commit
//     them with k_f = target (they may lack what was acknowledged without
//     them; the simulator found the FSM-first order losing those writes).
//
// Modes: on narrows to the standbys that stream (k_f drops with it, a
// synchronous_degraded event, a warning in `cluster show`; asynchronous
// when none streams). strict never narrows below k: members that do not
// stream stay named and commits wait (Postgres's ANY k of fewer streaming
// standbys blocks); with an empty set, strict names every other data node,
// so commits wait too. Switching synchronous off: Postgres runs the lease
// gate at once and the set is then committed empty (the failover rule is
// the asynchronous one from the commit of the setting). Switching it on
// starts from the empty set (widening from ∅). A change of
// synchronous_count is a raise or a lower as above; config set refuses k
// larger than the data nodes minus one (fsm.CheckSettings).
//
// Promotion. Promote keeps S_f' = S_f − {new primary P} with k_f' =
// min(k_f, |S_f'|) (fsm.PromotedSyncCount) and records the floor F = what
// P had received when chosen (ClusterState.sync_floor_lsn). P's Postgres
// runs with ANY max(k_f', target) (S_f') before pg_promote (a standby in
// synchronous mode always runs with the setting it would have as primary,
// which a standby ignores and a promotion puts into effect; promote()
// checks Postgres runs with it), so the invariant holds from P's first
// writable moment. Why nothing acknowledged is lost at the next failover,
// P's included:
//
//   - a write acknowledged by the old primary is on k_f members of S_f,
//     hence on P (the most advanced of the answers, one of which holds
//     it), so at or below F; a member B of S_f' may lack it (it lagged P);
//   - a write acknowledged by P in its term was flushed by k_f' members of
//     S_p ⊆ S_f'; WAL is one stream (P's new timeline continues from the
//     end of the last complete record it received), so each of them holds
//     everything before it, every write the old primary acknowledged
//     included;
//   - so if P fails, the most advanced of n' − k_f' + 1 answers of S_f'
//     holds every acknowledged write as soon as it has received F: what the
//     old primary acknowledged is at or below F, what P acknowledged is on
//     k_f' members, one of which answered. chooseSync therefore refuses a
//     winner below F (P may be the only node with a write the old primary
//     acknowledged) — a lagging B that never streamed from P is not
//     promoted in P's place, and it needs no special care once it streams:
//     P's commits wait for k_f' of S_f', so those P waited for are past F
//     (or, when P's timeline forked a torn record's length below F, soon
//     will be: the floor may delay a failover, never admit a loss).
//
// The members kept in S_f' re-point to P only after they applied the
// promotion: manageSync does not take them out for not streaming during
// syncJoinGrace after P began its term (P's writes wait for them meanwhile);
// after that, a member still absent leaves the set as any dead standby does
// (on mode). With S_f empty (no standby streams) an on-mode primary commits
// asynchronously and no automatic failover happens — Patroni's non-strict
// synchronous mode.

// syncNames renders synchronous_standby_names for a set of node names and
// a count k.
func syncNames(names []string, k int) string {
	if len(names) == 0 {
		return ""
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
	}
	return fmt.Sprintf("ANY %d (%s)", max(k, 1), strings.Join(quoted, ", "))
}

// syncTarget: the count the settings ask of a set of n members — k in
// strict mode (commits wait when fewer stream), at most n in on mode.
func syncTarget(s *pb.Settings, n int) int {
	k := clusterconf.SyncCount(s)
	if s.GetSynchronousStrict() {
		return k
	}
	return max(min(k, n), 1)
}

// syncSetting is this node's synchronous_standby_names in synchronous mode:
// on the primary, ANY max(k_f, target) of S_f minus the members being taken
// out in this term; on a standby, what it must run with the moment a
// promotion makes it primary (Promote keeps the rest of the set with
// fsm.PromotedSyncCount). A standby ignores it; having it loaded long
// before pg_promote means Postgres waits for members from its first
// writable moment.
//
// In asynchronous mode it is the lease gate (pgctl/gate.go), on every data
// node for the same reason: the local replication client in the guard
// process that acknowledges commits only while the lease deadline holds.
// Synchronous on mode names it only while the set it would name is empty
// (no member streams, so commits would otherwise need nobody): with
// members, a commit needs them, and the members stream from the new
// primary once one is promoted, so a thawed old primary cannot acknowledge
// anything (DESIGN.md, point 3a). Strict mode with an empty set names every
// other data node instead (commits wait). Empty otherwise (not a data node,
// or the gate disabled).
func (a *Keeper) syncSetting(st *pb.ClusterState) string {
	me := fsm.NodeByName(st, a.cfg.Name)
	if me == nil || me.Kind != pb.NodeKind_NODE_KIND_DATA {
		return ""
	}
	gate := pgctl.GateApplicationName
	if pc := a.cfg.Postgres; pc != nil && pc.DisableLeaseGate {
		gate = ""
	}
	s := st.Settings
	if !s.GetSynchronous() {
		return gate
	}
	primary := me.Role == pb.NodeRole_NODE_ROLE_PRIMARY
	thisTerm := primary && a.syncTerm == st.Term
	var names []string
	ids := st.SyncStandbys
	kf := fsm.SyncCount(st)
	if !primary {
		kf = fsm.PromotedSyncCount(st, me.Id)
	}
	if thisTerm && len(st.SyncStandbys) == 0 {
		ids, kf = a.syncInclude, 0 // widening from an empty set: Postgres first (manageSync)
	}
	for _, id := range ids {
		if id == me.Id || (thisTerm && a.syncExclude[id]) {
			continue
		}
		if n := fsm.NodeByID(st, id); n != nil {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 && s.GetSynchronousStrict() {
		for _, n := range st.Nodes {
			if n.Kind == pb.NodeKind_NODE_KIND_DATA && n.Id != me.Id {
				names = append(names, n.Name)
			}
		}
		kf = 0
	}
	if len(names) == 0 {
		return gate
	}
	sort.Strings(names)
	return syncNames(names, max(kf, syncTarget(s, len(names))))
}

// syncEligible: standbys that may be in the synchronous set — promotable
// (active, priority > 0, not nofailover), not tagged nosync, and streaming
// from this primary now. keep: members of S_f that are not streaming but
// otherwise eligible stay eligible (the grace after a promotion).
func syncEligible(st *pb.ClusterState, pg *pgctl.Status, keep bool) []uint32 {
	streaming := map[string]bool{}
	for _, r := range pg.Replication {
		if r.State == "streaming" {
			streaming[r.ApplicationName] = true
		}
	}
	cands, _ := fsm.Promotable(st)
	var ids []uint32
	for _, n := range cands {
		member := slices.Contains(st.SyncStandbys, n.Id)
		if (streaming[n.Name] || (keep && member)) && !fsm.HasTag(n, "nosync") {
			ids = append(ids, n.Id)
		}
	}
	slices.Sort(ids)
	return ids
}

// syncJoinGrace: how long a new primary keeps the members it inherited in
// the synchronous set before they stream from it (two leases, at least 5 s).
func (a *Keeper) syncJoinGrace(st *pb.ClusterState) time.Duration {
	lease := time.Duration(st.Settings.GetLeaseMs()) * time.Millisecond
	if lease <= 0 {
		lease = a.cfg.Timing.Lease.D()
	}
	return max(2*lease, 5*time.Second)
}

// manageSync moves (S_f, k_f) one step toward the standbys that stream
// now and the count the settings ask for (primary, synchronous mode;
// called by primaryDuties). The order of the steps is the argument at the
// top of this file.
func (a *Keeper) manageSync(ctx context.Context, term uint64) error {
	st := a.log.State()
	me := fsm.NodeByName(st, a.cfg.Name)
	if me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY || st.Term != term {
		return nil
	}
	if a.syncTerm != term {
		a.syncTerm, a.syncTermAt, a.syncExclude, a.syncInclude = term, a.clk.Now(), nil, nil
		a.syncStep, a.syncStepFloor = "", 0
	}
	s := st.Settings
	if !s.GetSynchronous() {
		a.syncExclude, a.syncInclude = nil, nil
		if len(st.SyncStandbys) > 0 { // mode switched off: Postgres already runs without it
			return a.commitSync(ctx, st, me, nil, 0)
		}
		return nil
	}
	status, err := a.pg.Status(ctx)
	if err != nil {
		return fmt.Errorf("synchronous set: %w", err)
	}
	grace := a.clk.Now().Sub(a.syncTermAt) < a.syncJoinGrace(st)
	want := syncEligible(st, status, grace)
	if s.GetSynchronousStrict() && len(want) < clusterconf.SyncCount(s) {
		// strict: never narrowed below k; the members stay named.
		for _, id := range st.SyncStandbys {
			if !slices.Contains(want, id) {
				want = append(want, id)
			}
		}
		slices.Sort(want)
	}
	step := planSync(st.SyncStandbys, fsm.SyncCount(st), want, s)
	switch step.kind {
	case syncStepNone:
		a.syncExclude, a.syncInclude = nil, nil
		return nil
	case syncStepCommit:
		// FSM first: widening a non-empty set, lowering k, or the empty set.
		if err := a.commitSync(ctx, st, me, step.ids, step.count); err != nil {
			return err
		}
		a.syncExclude, a.syncInclude = nil, nil
		return a.configure(ctx, action{Kind: actConfigure, Term: term})
	case syncStepNarrow:
		a.syncInclude = nil
		a.syncExclude = map[uint32]bool{}
		for _, id := range step.removed {
			a.syncExclude[id] = true
		}
	case syncStepInclude:
		a.syncExclude = nil
		a.syncInclude = step.ids
	case syncStepRaise:
		a.syncExclude, a.syncInclude = nil, nil
	}
	// Postgres first (narrowing, widening from empty, raising k): commit
	// once it runs with the setting and step.count members hold everything
	// acknowledged before it.
	if err := a.configure(ctx, action{Kind: actConfigure, Term: term}); err != nil {
		return err
	}
	ok, err := a.stepCaughtUp(ctx, a.log.State(), step.ids, step.count, step.removed)
	if err != nil || !ok {
		return err // not yet: next round
	}
	if err := a.commitSync(ctx, st, me, step.ids, step.count); err != nil {
		return err
	}
	a.syncExclude, a.syncInclude = nil, nil
	a.syncStep, a.syncStepFloor = "", 0
	return nil
}

// The kinds of syncStep.
const (
	syncStepNone    = iota
	syncStepCommit  // commit (ids, count) first, then configure
	syncStepNarrow  // Postgres without removed, then commit (ids, count)
	syncStepInclude // widening from empty: Postgres names ids, then commit
	syncStepRaise   // Postgres runs ANY count, then commit (ids, count)
)

// syncStep is the one step planSync chose: the committed (ids, count) it
// leads to.
type syncStep struct {
	kind    int
	ids     []uint32
	count   int
	removed []uint32
}

// planSync chooses the next step from the committed set cur with count kf
// toward want (the standbys that may be members now) and the count the
// settings ask for. Pure: the table tests in sync_test.go walk it.
func planSync(cur []uint32, kf int, want []uint32, s *pb.Settings) syncStep {
	var remove, add []uint32
	for _, id := range cur {
		if !slices.Contains(want, id) {
			remove = append(remove, id)
		}
	}
	for _, id := range want {
		if !slices.Contains(cur, id) {
			add = append(add, id)
		}
	}
	switch {
	case len(cur) == 0 && len(add) > 0:
		return syncStep{kind: syncStepInclude, ids: add, count: min(syncTarget(s, len(add)), len(add))}
	case len(cur) == 0:
		return syncStep{kind: syncStepNone}
	case len(add) > 0:
		// Widen first (same k_f): narrowing then keeps more members.
		return syncStep{kind: syncStepCommit, ids: append(slices.Clone(cur), add...), count: kf}
	case len(remove) == len(cur):
		return syncStep{kind: syncStepCommit, ids: nil, count: 0}
	case len(remove) > 0:
		keep := slices.DeleteFunc(slices.Clone(cur), func(id uint32) bool { return slices.Contains(remove, id) })
		if k := min(syncTarget(s, len(keep)), len(keep)); kf > k {
			return syncStep{kind: syncStepCommit, ids: cur, count: k} // lower k first (FSM first)
		}
		return syncStep{kind: syncStepNarrow, ids: keep, count: kf, removed: remove}
	}
	k := min(syncTarget(s, len(cur)), len(cur))
	switch {
	case k < kf:
		return syncStep{kind: syncStepCommit, ids: cur, count: k}
	case k > kf:
		return syncStep{kind: syncStepRaise, ids: cur, count: k}
	}
	return syncStep{kind: syncStepNone}
}

// stepCaughtUp: Postgres runs with the setting of the step now
// (synchronous_standby_names as configure rendered it; the removed
// standbys' walsenders no longer count) and need members of ids flushed
// everything acknowledged before it. The first time Postgres is seen
// running it, every later commit waits for what it names, and every
// earlier one is at most the primary's flush position then
// (syncStepFloor); once need members flushed past it, they hold them all.
// A fixed floor, not the moving flush position, so that it ends under a
// steady stream of writes.
func (a *Keeper) stepCaughtUp(ctx context.Context, st *pb.ClusterState, ids []uint32, need int, removed []uint32) (bool, error) {
	want := a.syncSetting(st)
	got, err := a.pg.CurrentSetting(ctx, "synchronous_standby_names")
	if err != nil {
		return false, fmt.Errorf("read synchronous_standby_names: %w", err)
	}
	if got != want {
		a.syncStep, a.syncStepFloor = "", 0
		return false, nil
	}
	status, err := a.pg.Status(ctx)
	if err != nil {
		return false, err
	}
	name := func(id uint32) string {
		if n := fsm.NodeByID(st, id); n != nil {
			return n.Name
		}
		return ""
	}
	for _, r := range status.Replication {
		for _, id := range removed {
			if r.ApplicationName == name(id) && r.SyncState != "async" && r.SyncState != "" {
				return false, nil // its walsender still counts
			}
		}
	}
	if a.syncStep != want {
		a.syncStep, a.syncStepFloor = want, status.FlushLSN
		return false, nil
	}
	have := 0
	for _, r := range status.Replication {
		for _, id := range ids {
			if r.ApplicationName == name(id) && r.FlushLSN >= a.syncStepFloor {
				have++
			}
		}
	}
	return have >= need, nil
}

func (a *Keeper) commitSync(ctx context.Context, st *pb.ClusterState, me *pb.Node, ids []uint32, count int) error {
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetSyncQuorum{SetSyncQuorum: &pb.SetSyncQuorum{Term: st.Term, PrimaryId: me.Id, NodeIds: ids, Count: uint32(count)}}}, 0)
	if err != nil {
		return fmt.Errorf("commit the synchronous set: %w", err)
	}
	a.logger.Info("synchronous set committed", "node_ids", ids, "count", count, "term", st.Term)
	return nil
}
