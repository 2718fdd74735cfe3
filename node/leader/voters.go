package leader

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Member is one server of the Raft configuration as the voter decision
// sees it.
type Member struct {
	Name     string
	Voter    bool
	Witness  bool
	Location string
	// Self: the Raft leader itself (never demoted; always live).
	Self bool
	// Registered: it has a row in the nodes table (an unregistered server is
	// never promoted).
	Registered bool
	// Healthy: its latest report reached the leader lately and it has
	// applied nearly all of the log (caught up): it may be promoted.
	Healthy bool
	// Silent: how long no report of it has reached the leader (counted
	// from when this leadership first saw it in the configuration when
	// none has since).
	Silent time.Duration
}

// VoterStep is one change of the voting membership: Promote (a non-voter
// made a voter) first, then Demote (a voter made a non-voter); either may
// be empty, and both empty means nothing to do.
type VoterStep struct {
	Promote, Demote string
	Why             string
}

// dead: a voter, not the leader, silent for replaceAfter.
func dead(m Member, replaceAfter time.Duration) bool {
	return m.Voter && !m.Self && m.Silent >= replaceAfter
}

// PlanVoters is the leader's pure choice of the next change of the voting
// membership (DESIGN.md "Raft group"). In order:
//
//  1. more voters than maxVoters: demote a dead voter (the longest silent),
//     never a live one;
//  2. fewer voters than maxVoters (a voter was removed): promote the best
//     healthy non-voter;
//  3. a voter dead for replaceAfter: promote the best healthy non-voter,
//     then demote the dead voter (never without a healthy non-voter: a
//     dead voter is better kept than the quorum shrunk);
//  4. a healthy witness that is a non-voter: promote it, then demote a live
//     data voter from the location with the most voters (not the leader).
//
// The best non-voter is a witness, else one in a location with the fewest
// voters (after the demotion), then by name. A step never leaves more
// voters than maxVoters when there were at most that many, and never fewer
// voters that are not dead.
func PlanVoters(ms []Member, maxVoters int, replaceAfter time.Duration) VoterStep {
	voters := 0
	var deadVoters []Member
	for _, m := range ms {
		if m.Voter {
			voters++
			if dead(m, replaceAfter) {
				deadVoters = append(deadVoters, m)
			}
		}
	}
	// The longest silent first, then by name.
	slices.SortFunc(deadVoters, func(a, b Member) int {
		if c := cmp.Compare(b.Silent, a.Silent); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	switch {
	case voters > maxVoters:
		if len(deadVoters) == 0 {
			return VoterStep{}
		}
		d := deadVoters[0]
		return VoterStep{Demote: d.Name, Why: fmt.Sprintf("%d voters, more than max_voters %d: %q has been silent for %s", voters, maxVoters, d.Name, d.Silent.Round(time.Second))}
	case voters < maxVoters:
		if c, ok := bestNonVoter(ms, ""); ok {
			return VoterStep{Promote: c.Name, Why: fmt.Sprintf("%d voters, fewer than max_voters %d", voters, maxVoters)}
		}
		return VoterStep{}
	}
	if len(deadVoters) > 0 {
		d := deadVoters[0]
		if c, ok := bestNonVoter(ms, d.Name); ok {
			return VoterStep{Promote: c.Name, Demote: d.Name, Why: fmt.Sprintf("voter %q has been silent for %s: %q takes its place", d.Name, d.Silent.Round(time.Second), c.Name)}
		}
		return VoterStep{}
	}
	c, ok := bestNonVoter(ms, "")
	if !ok || !c.Witness {
		return VoterStep{}
	}
	if d, ok := crowdedDataVoter(ms); ok {
		return VoterStep{Promote: c.Name, Demote: d.Name, Why: fmt.Sprintf("witness %q votes in place of data node %q (a witness is preferred as a voter)", c.Name, d.Name)}
	}
	return VoterStep{}
}

// votersByLocation counts the voters of each location, leaving out one
// (the voter a step demotes).
func votersByLocation(ms []Member, without string) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		if m.Voter && m.Name != without {
			out[m.Location]++
		}
	}
	return out
}

// bestNonVoter is the healthy, registered non-voter to promote: witnesses
// first, then the location with the fewest voters (leaving out the voter
// the step demotes), then by name.
func bestNonVoter(ms []Member, demoted string) (Member, bool) {
	per := votersByLocation(ms, demoted)
	var best Member
	found := false
	for _, m := range ms {
		if m.Voter || !m.Healthy || !m.Registered {
			continue
		}
		if !found || betterCandidate(m, best, per) {
			best, found = m, true
		}
	}
	return best, found
}

func betterCandidate(a, b Member, per map[string]int) bool {
	if a.Witness != b.Witness {
		return a.Witness
	}
	if per[a.Location] != per[b.Location] {
		return per[a.Location] < per[b.Location]
	}
	return a.Name < b.Name
}

// crowdedDataVoter is the live data voter a witness replaces: from the
// location with the most voters, then the last by name; never the leader.
func crowdedDataVoter(ms []Member) (Member, bool) {
	per := votersByLocation(ms, "")
	var best Member
	found := false
	for _, m := range ms {
		if !m.Voter || m.Witness || m.Self || !m.Healthy {
			continue
		}
		if !found || per[m.Location] > per[best.Location] || (per[m.Location] == per[best.Location] && m.Name > best.Name) {
			best, found = m, true
		}
	}
	return best, found
}

// voterFresh: a report older than this does not count as healthy.
func (l *Leader) voterFresh() time.Duration { return 3 * l.cfg.MonitorInterval }

// members is the Raft configuration with what the leader knows of each
// server: its row and how lately its report arrived.
func (l *Leader) members(st *pb.ClusterState, servers []Server) []Member {
	now := l.clk.Now()
	applied := l.raft.AppliedIndex()
	out := make([]Member, 0, len(servers))
	for _, s := range servers {
		m := Member{Name: s.ID, Voter: s.Voter, Self: s.ID == l.cfg.Name}
		row := fsm.NodeByName(st, s.ID)
		// Silence counts from the first time this leadership saw the
		// server (a voter that joined a moment ago has not reported yet).
		last, ok := l.seen[s.ID]
		if !ok {
			last = now
			l.seen[s.ID] = now
		}
		if row != nil {
			m.Registered, m.Witness, m.Location = true, row.Kind == pb.NodeKind_NODE_KIND_WITNESS, row.Location
			if idx, at, ok := l.peers.Report(row.Id); ok {
				m.Healthy = now.Sub(at) <= l.voterFresh() && idx+10 >= applied
				if at.After(last) {
					last = at
				}
			}
		}
		if m.Self {
			m.Healthy = true
		} else {
			m.Silent = max(now.Sub(last), 0)
		}
		out = append(out, m)
	}
	return out
}

// manageVoters keeps the voting membership at max_voters, spread across
// locations, and replaces voters that have been silent for
// voter_replace_after (PlanVoters); each change to Raft is followed by a
// SetVoter that records it. Rows whose voter flag disagrees with Raft's
// configuration are brought in line first.
func (l *Leader) manageVoters(ctx context.Context, st *pb.ClusterState) {
	servers, index, err := l.raft.Servers()
	if err != nil || len(servers) == 0 {
		return
	}
	for _, s := range servers {
		if row := fsm.NodeByName(st, s.ID); row != nil && row.Voter != s.Voter {
			l.setVoter(ctx, row, s.Voter, "the row follows the Raft configuration")
			return
		}
	}
	step := PlanVoters(l.members(st, servers), fsm.MaxVoters(st.Settings), fsm.VoterReplaceAfter(st.Settings))
	if step.Promote != "" {
		s, _ := serverNamed(servers, step.Promote)
		// Only on the configuration decided on: a join in between makes
		// the decision stale (the next pass decides again).
		if err := l.raft.AddVoter(ctx, s, index); err != nil {
			l.lg.Warn("promote a non-voter", "node", s.ID, "why", step.Why, "error", err)
			return
		}
		l.lg.Info("non-voter promoted to voter", "node", s.ID, "why", step.Why)
		if row := fsm.NodeByName(st, s.ID); row != nil {
			l.setVoter(ctx, row, true, step.Why)
		}
	}
	if step.Demote != "" {
		// After a promotion the configuration moved on; a demotion alone
		// waits for none (demoting a voter never adds one).
		prev := index
		if step.Promote != "" {
			prev = 0
		}
		if err := l.raft.DemoteVoter(ctx, step.Demote, prev); err != nil {
			l.lg.Warn("demote a voter", "node", step.Demote, "why", step.Why, "error", err)
			return
		}
		l.lg.Info("voter demoted to non-voter", "node", step.Demote, "why", step.Why)
		if row := fsm.NodeByName(st, step.Demote); row != nil {
			l.setVoter(ctx, row, false, step.Why)
		}
	}
}

func (l *Leader) setVoter(ctx context.Context, row *pb.Node, voter bool, why string) {
	if _, err := l.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetVoter{SetVoter: &pb.SetVoter{NodeId: row.Id, Voter: voter, Details: why}}}, proposeTimeout); err != nil {
		l.lg.Warn("record a voter change", "node", row.Name, "voter", voter, "error", err)
	}
}

func serverNamed(servers []Server, name string) (Server, bool) {
	for _, s := range servers {
		if s.ID == name {
			return s, true
		}
	}
	return Server{}, false
}
