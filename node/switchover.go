package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Planned switchover (DESIGN.md "Planned switchover"):
//
//  1. The leader checks the target and commits BeginSwitchover{from, to,
//     term, deadline}.
//  2. The old primary's sidecar checkpoints, stops Postgres cleanly (a fast
//     shutdown: every acknowledged write is in the WAL the walsenders send
//     before they exit) and commits its shutdown checkpoint LSN.
//  3. The leader waits until the target has received WAL past that LSN and
//     commits Promote{to, term+1, switchover}; the target promotes.
//  4. The old primary starts as a standby of the target without pg_rewind
//     (it stopped cleanly at a point the target has), the others follow.
//  5. If the target has not been promoted by the deadline, the leader gives
//     the old primary its role back in a new term (switchover_rollback):
//     the cluster is never left without a primary.

// Switchover is `hasidecar switchover --to NAME`; it runs on the leader (a
// follower answers not_leader).
func (s *clusterService) Switchover(ctx context.Context, req *pb.SwitchoverRequest) (*pb.SwitchoverResponse, error) {
	if err := s.n.requireLeader(ctx); err != nil {
		return nil, err
	}
	return s.n.switchover(ctx, req)
}

func (n *Node) switchover(ctx context.Context, req *pb.SwitchoverRequest) (*pb.SwitchoverResponse, error) {
	st := n.fsm.State()
	resp := &pb.SwitchoverResponse{}
	ok := func(format string, args ...any) {
		resp.Checks = append(resp.Checks, "ok: "+fmt.Sprintf(format, args...))
	}
	primary := fsm.Primary(st)
	target := fsm.NodeByName(st, req.To)
	switch {
	case target == nil:
		return nil, notFound("no node named %q", req.To)
	case target.Kind != pb.NodeKind_NODE_KIND_DATA:
		return nil, refuse("%q is a witness: it has no Postgres to promote", target.Name)
	case st.Settings.GetPaused():
		return nil, refuse("the cluster is paused: run `hasidecar unpause` first")
	case st.Switchover != nil:
		return nil, refuse("another switchover is in flight (node %d to node %d)", st.Switchover.FromId, st.Switchover.ToId)
	case primary == nil:
		return nil, refuse("the cluster has no primary to switch over from")
	case primary.Id == target.Id:
		return nil, refuse("%q is already the primary", target.Name)
	}
	lease, appliedAt := n.fsm.Lease()
	if fsm.LeaseExpired(lease, appliedAt, time.Now(), n.cfg.Timing.DriftMarginPercent) {
		return nil, refuse("the lease of %q has expired or was released: a failover is in flight", primary.Name)
	}
	ok("%q is the primary and holds its lease (term %d)", primary.Name, st.Term)
	cands, skipped := fsm.Promotable(st)
	found := false
	for _, c := range cands {
		found = found || c.Id == target.Id
	}
	if !found {
		return nil, refuse("%q cannot be promoted: %s", target.Name, skipped[target.Name])
	}
	ok("%q is an active standby with priority %d", target.Name, target.Priority)
	if st.Settings.GetSynchronous() {
		if !slices.Contains(st.SyncStandbys, target.Id) {
			return nil, refuse("%q is not in the synchronous set yet (synchronous mode): wait until it streams, see `hasidecar cluster show`", target.Name)
		}
		ok("%q is a synchronous standby", target.Name)
	}
	timeout := 2 * time.Second
	pa, err := n.askLSN(ctx, primary, st.Term, timeout)
	if err != nil || !pa.Healthy {
		return nil, refuse("cannot ask the primary %q for its WAL position: %v", primary.Name, errOr(err, pa.GetReason()))
	}
	ta, err := n.askLSN(ctx, target, st.Term, timeout)
	switch {
	case err != nil:
		return nil, refuse("%q is unhealthy: its sidecar does not answer: %v", target.Name, err)
	case !ta.Healthy:
		return nil, refuse("%q is unhealthy: %s", target.Name, ta.Reason)
	case !ta.Postgres.GetInRecovery() || ta.Postgres.GetWalReceiverStatus() != "streaming":
		return nil, refuse("%q is unhealthy: it is not streaming from the primary (wal receiver %q)", target.Name, ta.Postgres.GetWalReceiverStatus())
	case pa.Timeline != ta.Timeline:
		return nil, refuse("%q is on timeline %d, the primary on %d", target.Name, ta.Timeline, pa.Timeline)
	}
	ok("%q streams from the primary on timeline %d", target.Name, ta.Timeline)
	received := max(ta.Postgres.GetReceiveLsn(), ta.Postgres.GetReplayLsn())
	cur := pa.Postgres.GetCurrentLsn()
	maxLag := st.Settings.GetMaximumLagOnFailover()
	if cur > received && cur-received > maxLag {
		return nil, refuse("%q is lagging: %d bytes behind the primary, more than maximum_lag_on_failover (%d)", target.Name, cur-received, maxLag)
	}
	ok("%q is %d bytes behind the primary (limit %d)", target.Name, max(cur, received)-received, maxLag)
	wait := time.Duration(req.TimeoutMs) * time.Millisecond
	if wait <= 0 {
		wait = 60 * time.Second
	}
	plan := []string{
		fmt.Sprintf("plan: commit the switchover from %q to %q in term %d", primary.Name, target.Name, st.Term),
		fmt.Sprintf("plan: %q checkpoints and stops cleanly, and reports its shutdown checkpoint", primary.Name),
		fmt.Sprintf("plan: once %q has received that checkpoint it is promoted in term %d", target.Name, st.Term+1),
		fmt.Sprintf("plan: %q restarts as a standby of %q without pg_rewind; the other standbys follow %q", primary.Name, target.Name, target.Name),
		fmt.Sprintf("plan: if %q is not promoted within %s, %q is the primary again in term %d", target.Name, wait, primary.Name, st.Term+1),
	}
	resp.Checks = append(resp.Checks, plan...)
	if req.DryRun {
		resp.Checks = append(resp.Checks, "dry run: nothing was changed")
		return resp, nil
	}
	deadline := time.Now().Add(wait)
	_, err = n.Propose(ctx, &pb.Command{Cmd: &pb.Command_BeginSwitchover{BeginSwitchover: &pb.BeginSwitchover{
		FromId: primary.Id, ToId: target.Id, Term: st.Term, DeadlineUnixMs: deadline.UnixMilli(),
	}}})
	if err != nil {
		return nil, fmt.Errorf("commit the switchover: %w", err)
	}
	n.logger.Info("switchover begun", "from", primary.Name, "to", target.Name, "term", st.Term)
	// Wait for the outcome: the switchover record is cleared by the
	// promotion of the target or by the rollback.
	for {
		cur := n.fsm.State()
		if cur.Switchover == nil || cur.Term > st.Term {
			p := fsm.Primary(cur)
			resp.Term = cur.Term
			if p != nil && p.Id == target.Id {
				resp.Ok = true
				resp.Details = fmt.Sprintf("%q is the primary", target.Name)
			} else {
				resp.Details = "rolled back: " + lastEventDetails(cur, fsm.EventSwitchover)
			}
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("switchover to %s: no outcome yet: %w (see `hasidecar cluster show`)", target.Name, ctx.Err())
		case <-n.fsm.Changed():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func errOr(err error, reason string) any {
	if err != nil {
		return err
	}
	return reason
}

func lastEventDetails(st *pb.ClusterState, typ string) string {
	for i := len(st.Events) - 1; i >= 0; i-- {
		if st.Events[i].Type == typ {
			return st.Events[i].Details
		}
	}
	return ""
}
