package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Failover is `hasidecar failover --to NAME`: a manual promotion once the
// primary is really gone (its lease expired or released), like repmgr
// standby promote. It runs on the leader; a follower sends the caller
// there (not_leader), so the leader checks the operator's own certificate.
func (s *clusterService) Failover(ctx context.Context, req *pb.FailoverRequest) (*pb.FailoverResponse, error) {
	if err := s.n.requireLeader(ctx); err != nil {
		return nil, err
	}
	return s.n.manualFailover(ctx, req)
}

func (n *Node) manualFailover(ctx context.Context, req *pb.FailoverRequest) (*pb.FailoverResponse, error) {
	st := n.fsm.State()
	resp := &pb.FailoverResponse{}
	check := func(format string, args ...any) {
		resp.Checks = append(resp.Checks, "ok: "+fmt.Sprintf(format, args...))
	}
	target := fsm.NodeByName(st, req.To)
	if target == nil {
		return nil, notFound("no node named %q", req.To)
	}
	if target.Kind != pb.NodeKind_NODE_KIND_DATA {
		return nil, refuse("%q is a witness: it has no Postgres to promote", target.Name)
	}
	if st.Switchover != nil {
		return nil, refuse("a switchover is in flight: wait for it to finish")
	}
	primary := fsm.Primary(st)
	if primary != nil && primary.Id == target.Id {
		return nil, refuse("%q is already the primary", target.Name)
	}
	lease, appliedAt := n.fsm.Lease()
	if primary != nil && !fsm.LeaseExpired(lease, appliedAt, time.Now(), n.cfg.Timing.DriftMarginPercent) {
		left := time.Until(appliedAt.Add(time.Duration(lease.DurationMs) * time.Millisecond))
		return nil, refuse("%q still holds its lease (renewed %s ago, expires in %s unless renewed): a failover would make two primaries; use `hasidecar switchover --to %s` for a planned change", primary.Name, time.Since(appliedAt).Round(time.Millisecond), left.Round(time.Millisecond), target.Name)
	}
	if primary != nil {
		check("the lease of %q has expired or was released", primary.Name)
	}
	cands, skipped := fsm.Promotable(st)
	var mine *pb.Node
	for _, c := range cands {
		if c.Id == target.Id {
			mine = c
		}
	}
	if mine == nil {
		return nil, refuse("%q cannot be promoted: %s", target.Name, skipped[target.Name])
	}
	check("%q is an active standby with priority %d", target.Name, target.Priority)
	if st.Settings.GetSynchronous() {
		if !slices.Contains(st.SyncStandbys, target.Id) {
			return nil, refuse("%q is not in the synchronous set: it may miss acknowledged writes (synchronous mode)", target.Name)
		}
		best, _, reasons := n.pickCandidate(ctx, st, lease)
		if best == nil {
			return nil, refuse("no safe promotion in synchronous mode: %s", strings.Join(reasons, "; "))
		}
		check("enough members of the synchronous set answered (n − k + 1 of n, ANY k)")
		cands = []*pb.Node{best.Node}
		if best.Node.Id != target.Id {
			cands = append(cands, target)
		}
	}
	answers := n.askLSNsFor(ctx, cands, st.Term)
	var mineAnswer *fsm.Candidate
	for i := range answers {
		if answers[i].Node.Id == target.Id {
			mineAnswer = &answers[i]
		}
	}
	best, _ := fsm.Choose(answers, lease, st.Settings.GetMaximumLagOnFailover(), st.Settings.GetSynchronous())
	if mineAnswer == nil {
		return nil, refuse("%q did not answer", target.Name)
	}
	only, onlyReasons := fsm.Choose([]fsm.Candidate{*mineAnswer}, lease, st.Settings.GetMaximumLagOnFailover(), st.Settings.GetSynchronous())
	if only == nil {
		return nil, refuse("%q cannot be promoted: %v", target.Name, onlyReasons)
	}
	check("%q answers, runs in recovery on timeline %d, received %s", target.Name, only.Answer.Timeline, fsm.FormatLSN(only.Received))
	if best != nil && best.Node.Id != target.Id && best.Received > only.Received {
		return nil, refuse("%q has received more WAL (%s) than %q (%s): promoting %q would lose it; choose %q", best.Node.Name, fsm.FormatLSN(best.Received), target.Name, fsm.FormatLSN(only.Received), target.Name, best.Node.Name)
	}
	check("no other standby has received more WAL")
	if req.DryRun {
		resp.Checks = append(resp.Checks, fmt.Sprintf("dry run: would promote %q in term %d", target.Name, st.Term+1))
		return resp, nil
	}
	_, err := n.Propose(ctx, fsm.Promote(st, fsm.Promotion{
		NodeID: target.Id, Reason: fsm.ReasonManual, LeaseSerial: lease.Serial,
		Timeline: only.Answer.Timeline, ReceivedLSN: only.Received, LeaseAnchor: only.Answer.GetLeaseAnchor(),
		Details: "manual failover (hasidecar failover --to " + target.Name + ")",
	}, n.cfg.Timing.Lease.D()))
	if err != nil {
		return nil, fmt.Errorf("commit the promotion of %s: %w", target.Name, err)
	}
	resp.Term = st.Term + 1
	return resp, nil
}
