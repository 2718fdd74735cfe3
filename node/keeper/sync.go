package keeper

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Synchronous mode (settings.synchronous). The primary runs with
//
//	synchronous_standby_names = 'ANY 1 ("pg2", "pg3", …)'
//
// naming a set S_p of its standbys, and the FSM holds the committed
// synchronous set S_f. The invariant is S_p ⊆ S_f at every moment: a commit
// is acknowledged only once a member of S_p — hence of S_f — flushed it.
//
//   - widening: commit S_f ∪ {m} first, then write S_p and reload;
//   - narrowing: write S_p without m and reload, wait until Postgres runs
//     with it (m's walsender no longer a candidate) and a remaining member
//     flushed everything written so far, then commit S_f without m.
//
// The leader fails over only to members of S_f and only once every member
// answered (ANY 1 of n needs answers from n − 1 + 1 = n), so it promotes the
// most advanced member, which holds every acknowledged write.
//
// Promotion. Promote keeps S_f' = S_f − {new primary P} and records the
// floor F = what P had received when chosen (ClusterState.sync_floor_lsn).
// P's Postgres runs with synchronous_standby_names = ANY 1 (S_f') before
// pg_promote (a standby in synchronous mode always runs with ANY 1 (S_f
// minus itself), which a standby ignores and a promotion puts into effect;
// promote() checks Postgres runs with it), so S_p ⊆ S_f' from P's first
// writable moment: P acknowledges no write before a member of S_f' streamed
// from it and flushed it. Why nothing acknowledged is lost at the next
// failover, P's included:
//
//   - a write acknowledged by the old primary is on some member of S_f (ANY
//     1: on one member only, perhaps), hence on P, the most advanced, so at
//     or below F; a member B of S_f' may lack it (it lagged P);
//   - a write acknowledged by P in its term was flushed by a member of
//     S_p ⊆ S_f'; WAL is one stream (P's new timeline continues from the
//     end of the last complete record it received), so that member holds
//     everything before it, every write the old primary acknowledged
//     included;
//   - so if P fails, the most advanced member of S_f' (all must answer, as
//     before) holds every acknowledged write as soon as it has received F:
//     what the old primary acknowledged is at or below F, what P
//     acknowledged is on the member P waited for. chooseSync therefore
//     refuses a winner below F (P may be the only node with a write the old
//     primary acknowledged) — a lagging B that never streamed from P is not
//     promoted in P's place, and it needs no special care once it streams:
//     P's commits wait for ANY 1 of S_f', so whichever member P waited for
//     is past F (or, when P's timeline forked a torn record's length below
//     F, soon will be: the floor may delay a failover, never admit a loss).
//
// The members kept in S_f' re-point to P only after they applied the
// promotion: manageSync does not take them out for not streaming during
// syncJoinGrace after P began its term (P's writes wait for them meanwhile);
// after that, a member still absent leaves the set as any dead standby does.
// With S_f empty (no standby streams) the primary commits asynchronously and
// no automatic failover happens — Patroni's non-strict synchronous mode.

// syncNames renders synchronous_standby_names for a set of node names.
func syncNames(names []string) string {
	if len(names) == 0 {
		return ""
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
	}
	return "ANY 1 (" + strings.Join(quoted, ", ") + ")"
}

// syncSetting is this node's synchronous_standby_names in synchronous mode:
// on the primary, S_f minus the members being taken out in this term; on a
// standby, S_f minus itself — what it must run with the moment a promotion
// makes it primary (Promote keeps the rest of the set). A standby ignores
// it; having it loaded long before pg_promote means Postgres waits for a
// member from its first writable moment.
//
// In asynchronous mode it is the lease gate (pgctl/gate.go), on every data
// node for the same reason: the local replication client in the guard
// process that acknowledges commits only while the lease deadline holds.
// Synchronous mode names it only while the set it would name is empty
// (non-strict: no member streams, so commits would otherwise need nobody):
// with members, a commit needs one of them, and the members stream from the
// new primary once one is promoted, so a thawed old primary cannot
// acknowledge anything (DESIGN.md, point 3a). Empty otherwise (not a data
// node, or the gate disabled).
func (a *Keeper) syncSetting(st *pb.ClusterState) string {
	me := fsm.NodeByName(st, a.cfg.Name)
	if me == nil || me.Kind != pb.NodeKind_NODE_KIND_DATA {
		return ""
	}
	gate := pgctl.GateApplicationName
	if pc := a.cfg.Postgres; pc != nil && pc.DisableLeaseGate {
		gate = ""
	}
	if !st.Settings.GetSynchronous() {
		return gate
	}
	primary := me.Role == pb.NodeRole_NODE_ROLE_PRIMARY
	var names []string
	ids := st.SyncStandbys
	if primary && a.syncTerm == st.Term && len(st.SyncStandbys) == 0 {
		ids = a.syncInclude // widening from an empty set: Postgres first (manageSync)
	}
	for _, id := range ids {
		if id == me.Id || (primary && a.syncTerm == st.Term && a.syncExclude[id]) {
			continue
		}
		if n := fsm.NodeByID(st, id); n != nil {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		return gate
	}
	sort.Strings(names)
	return syncNames(names)
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

// manageSync moves the synchronous set one step toward the standbys that
// stream now (primary, synchronous mode; called by primaryDuties).
func (a *Keeper) manageSync(ctx context.Context, term uint64) error {
	st := a.log.State()
	me := fsm.NodeByName(st, a.cfg.Name)
	if me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY || st.Term != term {
		return nil
	}
	if a.syncTerm != term {
		a.syncTerm, a.syncTermAt, a.syncExclude, a.syncInclude, a.syncIncludeFloor = term, a.clk.Now(), nil, nil, 0
	}
	if !st.Settings.GetSynchronous() {
		a.syncExclude = nil
		if len(st.SyncStandbys) > 0 { // mode switched off: Postgres already runs without it
			return a.commitSync(ctx, st, me, nil)
		}
		return nil
	}
	status, err := a.pg.Status(ctx)
	if err != nil {
		return fmt.Errorf("synchronous set: %w", err)
	}
	grace := a.clk.Now().Sub(a.syncTermAt) < a.syncJoinGrace(st)
	want := syncEligible(st, status, grace)
	var remove, add []uint32
	for _, id := range st.SyncStandbys {
		if !slices.Contains(want, id) {
			remove = append(remove, id)
		}
	}
	for _, id := range want {
		if !slices.Contains(st.SyncStandbys, id) {
			add = append(add, id)
		}
	}
	switch {
	case len(remove) > 0 && len(remove) == len(st.SyncStandbys):
		// The last members go: commit the empty set first, then let
		// Postgres commit without them (the lease gate alone). Narrowing
		// Postgres first, as below, would acknowledge commits that no
		// member holds while the FSM still names one: a primary cut off
		// before the empty set commits would then lose them to that
		// member's promotion (the simulator's sync-narrow-empty). Until
		// the commit, Postgres still waits for the old members: writes
		// block, none is lost.
		if err := a.commitSync(ctx, st, me, nil); err != nil {
			return err
		}
		a.syncExclude = nil
		return a.configure(ctx, action{Kind: actConfigure, Term: term})
	case len(remove) > 0:
		// Narrow Postgres first (configure writes S_f minus these and
		// reloads), then the FSM once Postgres runs with it: the members
		// kept still hold every commit acknowledged from then on.
		a.syncExclude = map[uint32]bool{}
		for _, id := range remove {
			a.syncExclude[id] = true
		}
		if err := a.configure(ctx, action{Kind: actConfigure, Term: term}); err != nil {
			return err
		}
		keep := slices.DeleteFunc(slices.Clone(st.SyncStandbys), func(id uint32) bool { return a.syncExclude[id] })
		ok, err := a.narrowed(ctx, st, remove, keep)
		if err != nil || !ok {
			return err // not yet: next round
		}
		if err := a.commitSync(ctx, st, me, keep); err != nil {
			return err
		}
		a.syncExclude = nil
	case len(add) > 0 && len(st.SyncStandbys) == 0:
		// Widening from an empty set: the new members may lack what was
		// acknowledged without them, so the FSM names them only once
		// Postgres waits for them and they hold everything it flushed;
		// until then the set stays empty (no automatic failover), and
		// commits wait for them (the simulator found the FSM-first order
		// losing those writes to a member's promotion).
		if !slices.Equal(a.syncInclude, add) {
			a.syncInclude, a.syncIncludeFloor = add, 0
		}
		if err := a.configure(ctx, action{Kind: actConfigure, Term: term}); err != nil {
			return err
		}
		ok, err := a.caughtUpSync(ctx, st, add)
		if err != nil || !ok {
			return err // not yet: next round
		}
		if err := a.commitSync(ctx, st, me, add); err != nil {
			return err
		}
		a.syncInclude, a.syncIncludeFloor = nil, 0
	case len(add) > 0:
		// Widen the FSM first; the next configure widens Postgres (the
		// members already in the set hold every acknowledged commit).
		return a.commitSync(ctx, st, me, append(slices.Clone(st.SyncStandbys), add...))
	}
	return nil
}

// caughtUpSync: one of ids holds every commit acknowledged so far. The
// first time Postgres counts one of them as synchronous, every later commit
// waits for it, and every earlier one is at most the primary's flush
// position then (syncIncludeFloor); once that member flushed past it, it
// holds them all. A fixed floor, not the moving flush position, so that it
// ends under a steady stream of writes.
func (a *Keeper) caughtUpSync(ctx context.Context, st *pb.ClusterState, ids []uint32) (bool, error) {
	status, err := a.pg.Status(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range status.Replication {
		for _, id := range ids {
			n := fsm.NodeByID(st, id)
			if n == nil || r.ApplicationName != n.Name || (r.SyncState != "sync" && r.SyncState != "quorum") {
				continue
			}
			if a.syncIncludeFloor == 0 {
				a.syncIncludeFloor = status.FlushLSN
				return false, nil
			}
			if r.FlushLSN >= a.syncIncludeFloor {
				return true, nil
			}
		}
	}
	return false, nil
}

// narrowed: Postgres runs with the narrower synchronous_standby_names (the
// removed standbys are no longer candidates) and, when members remain, one
// of them has flushed everything written so far.
func (a *Keeper) narrowed(ctx context.Context, st *pb.ClusterState, removed, keep []uint32) (bool, error) {
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
	if len(keep) == 0 {
		return true, nil
	}
	for _, r := range status.Replication {
		for _, id := range keep {
			if r.ApplicationName == name(id) && r.FlushLSN >= status.FlushLSN {
				return true, nil
			}
		}
	}
	return false, nil
}

func (a *Keeper) commitSync(ctx context.Context, st *pb.ClusterState, me *pb.Node, ids []uint32) error {
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: st.Term, PrimaryId: me.Id, NodeIds: ids}}}, 0)
	if err != nil {
		return fmt.Errorf("commit the synchronous set: %w", err)
	}
	a.logger.Info("synchronous set committed", "node_ids", ids, "term", st.Term)
	return nil
}
