package node

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

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
//     flushed everything written so far, then commit S_f without m;
//   - a promotion empties S_f (FSM): the new primary starts asynchronous and
//     widens as its standbys stream from it.
//
// The leader fails over only to members of S_f and only once every member
// answered (ANY 1 of n needs answers from n − 1 + 1 = n), so it promotes the
// most advanced member, which holds every acknowledged write. With S_f empty
// (no standby streams) the primary commits asynchronously and no automatic
// failover happens — Patroni's non-strict synchronous mode.

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

// syncSetting is this node's synchronous_standby_names: on the primary in
// synchronous mode, S_f minus the members being taken out; else empty.
func (a *pgAgent) syncSetting(st *pb.ClusterState) string {
	me := fsm.NodeByName(st, a.n.cfg.Name)
	if !st.Settings.GetSynchronous() || me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY {
		return ""
	}
	var names []string
	for _, id := range st.SyncStandbys {
		if a.syncExclude[id] {
			continue
		}
		if n := fsm.NodeByID(st, id); n != nil {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return syncNames(names)
}

// syncEligible: standbys that may be in the synchronous set — promotable
// (active, priority > 0, not nofailover), not tagged nosync, and streaming
// from this primary now.
func syncEligible(st *pb.ClusterState, pg *pgctl.Status) []uint32 {
	streaming := map[string]bool{}
	for _, r := range pg.Replication {
		if r.State == "streaming" {
			streaming[r.ApplicationName] = true
		}
	}
	cands, _ := promotable(st)
	var ids []uint32
	for _, n := range cands {
		if streaming[n.Name] && !fsm.HasTag(n, "nosync") {
			ids = append(ids, n.Id)
		}
	}
	slices.Sort(ids)
	return ids
}

// manageSync moves the synchronous set one step toward the standbys that
// stream now (primary, synchronous mode; called by primaryDuties).
func (a *pgAgent) manageSync(ctx context.Context, term uint64) error {
	st := a.n.fsm.State()
	me := fsm.NodeByName(st, a.n.cfg.Name)
	if me == nil || me.Role != pb.NodeRole_NODE_ROLE_PRIMARY || st.Term != term {
		return nil
	}
	if !st.Settings.GetSynchronous() {
		a.syncExclude = nil
		if len(st.SyncStandbys) > 0 { // mode switched off: Postgres already runs without it
			return a.commitSync(ctx, st, me, nil)
		}
		return nil
	}
	status, err := a.ctl.Status(ctx)
	if err != nil {
		return fmt.Errorf("synchronous set: %w", err)
	}
	want := syncEligible(st, status)
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
	case len(remove) > 0:
		// Narrow Postgres first (configure writes S_f minus these and
		// reloads), then the FSM once Postgres runs with it.
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
	case len(add) > 0:
		// Widen the FSM first; the next configure widens Postgres.
		return a.commitSync(ctx, st, me, append(slices.Clone(st.SyncStandbys), add...))
	}
	return nil
}

// narrowed: Postgres runs with the narrower synchronous_standby_names (the
// removed standbys are no longer candidates) and, when members remain, one
// of them has flushed everything written so far.
func (a *pgAgent) narrowed(ctx context.Context, st *pb.ClusterState, removed, keep []uint32) (bool, error) {
	status, err := a.ctl.Status(ctx)
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

func (a *pgAgent) commitSync(ctx context.Context, st *pb.ClusterState, me *pb.Node, ids []uint32) error {
	_, err := a.n.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetSyncStandbys{SetSyncStandbys: &pb.SetSyncStandbys{Term: st.Term, PrimaryId: me.Id, NodeIds: ids}}})
	if err != nil {
		return fmt.Errorf("commit the synchronous set: %w", err)
	}
	a.logger.Info("synchronous set committed", "node_ids", ids, "term", st.Term)
	return nil
}
