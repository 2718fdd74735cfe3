// Package rolling is the restart of Postgres across a cluster, in order:
// each standby in turn (the next only once the last is back with a new
// postmaster, streaming, nothing pending), then a switchover to the best
// standby, which restarts the former primary as a standby. One builder and
// one driver, used by the CLI (`hasidecar restart`, with the operator's
// certificate) and by the Raft leader (`hasidecar restart --scheduled`,
// when the schedule is due); each brings its own Cluster.
package rolling

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Cluster is what a restart needs of the cluster.
type Cluster interface {
	// Show is the cluster view (cluster show), as current as the leader
	// can make it.
	Show(ctx context.Context) (*pb.ShowResponse, error)
	// Restart asks n's own sidecar to restart its Postgres, and answers
	// once it is stopped: the start time of the postmaster it stopped
	// (unix ms) and its role.
	Restart(ctx context.Context, n *pb.NodeView) (*pb.RestartPostgresResponse, error)
	// Switchover is `hasidecar switchover --to NAME`.
	Switchover(ctx context.Context, to string, timeout time.Duration) (*pb.SwitchoverResponse, error)
	// PendingSettings asks n's own sidecar which settings its Postgres
	// waits to restart for (NodeService.PendingSettings).
	PendingSettings(ctx context.Context, n *pb.NodeView) (*pb.PendingSettingsResponse, error)
}

// SwitchoverTimeout is the timeout of the rolling restart's switchover.
const SwitchoverTimeout = 60 * time.Second

// PollInterval is how often a restart looks at the cluster view while it
// waits for a node to be back.
const PollInterval = 500 * time.Millisecond

// ErrNoTarget: --node names a witness or a node in maintenance.
var ErrNoTarget = errors.New("a witness or a node in maintenance has no Postgres its keeper restarts")

// Plan is what a restart will do, in order.
type Plan struct {
	Primary     *pb.NodeView   // the primary of the view (nil: none)
	Standbys    []*pb.NodeView // the standbys it restarts
	WithPrimary bool           // the primary is restarted too
	Lowered     []string       // what the primary's restart lowers of config.HotStandbyParameters
	Steps       []Step         // in order
	Skipped     []string       // nodes left out, and why
}

// StepKind is one kind of step of a restart.
type StepKind int

const (
	StepRestart        StepKind = iota + 1 // a standby
	StepPrimaryInPlace                     // the primary, under its lease
	StepSwitchover                         // to the best standby, which restarts the primary as a standby
)

// Step is one step of a plan.
type Step struct {
	Kind StepKind
	Node string
}

func (s Step) String() string {
	switch s.Kind {
	case StepPrimaryInPlace:
		return fmt.Sprintf("restart the primary %s in place (writes pause while it restarts; no failover)", s.Node)
	case StepSwitchover:
		return fmt.Sprintf("switch over from %s to the best standby, which restarts %s as a standby", s.Node, s.Node)
	}
	return "restart " + s.Node
}

// Describe is the plan in one line ("restart pg2; then restart pg3; ...").
func (p *Plan) Describe() string {
	out := make([]string, len(p.Steps))
	for i, st := range p.Steps {
		out[i] = st.String()
	}
	return strings.Join(out, "; then ")
}

// Lowered asks the primary's sidecar which of its settings waiting for a
// restart lower one of config.HotStandbyParameters ("name running →
// pending" each). nil primary, or nothing pending on it: none.
func Lowered(ctx context.Context, c Cluster, primary *pb.NodeView) ([]string, error) {
	if primary == nil || len(primary.GetPostgres().GetPendingRestart()) == 0 {
		return nil, nil
	}
	resp, err := c.PendingSettings(ctx, primary)
	if err != nil {
		return nil, fmt.Errorf("ask the primary %s which settings wait for a restart (nothing was restarted): %w", primary.Name, err)
	}
	var out []string
	for _, p := range resp.Settings {
		if p.LowersHotStandby {
			out = append(out, fmt.Sprintf("%s %s → %s", p.Name, p.Running, p.Pending))
		}
	}
	return out, nil
}

// PrimaryOf is the primary data node of view, or nil.
func PrimaryOf(view *pb.ShowResponse) *pb.NodeView {
	for _, n := range view.GetNodes() {
		if n.Kind == pb.NodeKind_NODE_KIND_DATA && n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			return n
		}
	}
	return nil
}

// NewPlan builds the restart of the nodes in view: only the node with id
// only (0: all), only those with pending_restart when pending; lowered is
// Lowered's answer for the view's primary. A plan with no steps restarts
// nothing.
func NewPlan(view *pb.ShowResponse, only uint32, pending bool, lowered []string) (*Plan, error) {
	p := &Plan{Primary: PrimaryOf(view), Lowered: lowered}
	var targets []*pb.NodeView
	for _, n := range view.GetNodes() {
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || (only != 0 && n.Id != only) {
			continue
		}
		if pending && len(n.GetPostgres().GetPendingRestart()) == 0 {
			continue
		}
		if n.Maintenance {
			p.Skipped = append(p.Skipped, fmt.Sprintf("skipping %s: in maintenance", n.Name))
			continue
		}
		targets = append(targets, n)
	}
	if only != 0 && len(targets) == 0 && !pending {
		return nil, ErrNoTarget
	}
	var standbys []string
	for _, n := range targets {
		if p.Primary != nil && n.Id == p.Primary.Id {
			p.WithPrimary = true
		} else {
			p.Standbys = append(p.Standbys, n)
			standbys = append(standbys, n.Name)
		}
	}
	primary := ""
	if p.Primary != nil {
		primary = p.Primary.Name
	}
	steps, err := orderRestart(primary, standbys, p.WithPrimary, only == 0, lowered)
	if err != nil {
		return nil, err
	}
	p.Steps = steps
	return p, nil
}

// orderRestart orders a restart of standbys (and of the primary when
// withPrimary; rolling: the whole cluster, not --node). Raising a setting
// of config.HotStandbyParameters works standbys first, then a switchover
// (or the primary in place with --node): a standby may run it higher than
// its primary. Lowering one (lowered: what the primary's pending settings
// lower) needs the primary first, in place, then the standbys: Postgres
// refuses a hot standby that runs one lower than its primary, so neither a
// standby restarted first nor the former primary after a switchover (its
// new primary still runs the higher value) could start.
func orderRestart(primary string, standbys []string, withPrimary, rolling bool, lowered []string) ([]Step, error) {
	var steps []Step
	if len(lowered) > 0 {
		if !withPrimary {
			return nil, fmt.Errorf("the primary %s lowers %s at its restart, and a standby may not run them lower than its primary: restart the primary first (`hasidecar restart --node %s`, or the whole cluster with --pending), then the standbys; nothing was restarted",
				primary, strings.Join(lowered, ", "), primary)
		}
		steps = append(steps, Step{StepPrimaryInPlace, primary})
		for _, s := range standbys {
			steps = append(steps, Step{StepRestart, s})
		}
		return steps, nil
	}
	for _, s := range standbys {
		steps = append(steps, Step{StepRestart, s})
	}
	switch {
	case withPrimary && rolling:
		steps = append(steps, Step{StepSwitchover, primary})
	case withPrimary:
		steps = append(steps, Step{StepPrimaryInPlace, primary})
	}
	return steps, nil
}

// Run carries the plan out, step by step, printing progress; it gives up
// at deadline. It returns what it did, in one line.
func (p *Plan) Run(ctx context.Context, c Cluster, deadline time.Time, progress func(string)) (string, error) {
	if len(p.Steps) == 0 {
		return "nothing to restart: no node has settings waiting for a restart", nil
	}
	byName := map[string]*pb.NodeView{}
	for _, n := range p.Standbys {
		byName[n.Name] = n
	}
	if p.Primary != nil {
		byName[p.Primary.Name] = p.Primary
	}
	if len(p.Lowered) > 0 && p.WithPrimary {
		progress(fmt.Sprintf("lowering %s: the primary first (a standby may not run them lower than its primary)", strings.Join(p.Lowered, ", ")))
	}
	var done []string
	// replayFloor: the primary's WAL position once it is back from an
	// in-place restart. Its startup wrote the new hot-standby parameters
	// to WAL (XLOG_PARAMETER_CHANGE); a standby copies them into its
	// pg_control only when it replays that record, and refuses to start
	// ("recovery aborted because of insufficient parameter settings")
	// with a value lower than its pg_control holds. So a standby restarts
	// only once it has replayed past the floor.
	var replayFloor uint64
	for i, st := range p.Steps {
		switch st.Kind {
		case StepRestart:
			if replayFloor > 0 {
				if err := waitReplayed(ctx, c, st.Node, replayFloor, deadline, progress); err != nil {
					return "", err
				}
			}
			progress(fmt.Sprintf("[%d/%d] restarting %s", i+1, len(p.Steps), st.Node))
		case StepPrimaryInPlace:
			progress(fmt.Sprintf("[%d/%d] restarting the primary %s in place", i+1, len(p.Steps), st.Node))
		case StepSwitchover:
			to, err := switchoverRestart(ctx, c, st.Node, deadline, i+1, len(p.Steps), progress)
			if err != nil {
				return "", err
			}
			done = append(done, st.Node)
			return fmt.Sprintf("%s is the primary; restarted %s", to, strings.Join(done, ", ")), nil
		}
		if err := restartNode(ctx, c, byName[st.Node], deadline, progress); err != nil {
			if st.Kind == StepPrimaryInPlace && len(p.Lowered) > 0 {
				return "", fmt.Errorf("lowering %s needs the primary restarted first, and it was not (nothing else was restarted): %w", strings.Join(p.Lowered, ", "), err)
			}
			return "", err
		}
		if st.Kind == StepPrimaryInPlace {
			floor, err := currentLSN(ctx, c, st.Node)
			if err != nil {
				return "", err
			}
			replayFloor = floor
		}
		done = append(done, st.Node)
	}
	return "restarted " + strings.Join(done, ", "), nil
}

// currentLSN is the WAL position name (a writable primary) reports.
func currentLSN(ctx context.Context, c Cluster, name string) (uint64, error) {
	view, err := c.Show(ctx)
	if err != nil {
		return 0, fmt.Errorf("read %s's WAL position after its restart: %w", name, err)
	}
	for _, n := range view.GetNodes() {
		if n.Name == name && n.GetPostgres().GetCurrentLsn() > 0 {
			return n.GetPostgres().GetCurrentLsn(), nil
		}
	}
	return 0, fmt.Errorf("read %s's WAL position after its restart: not reported; the standbys are not restarted", name)
}

// waitReplayed waits until the standby name has replayed WAL up to lsn.
func waitReplayed(ctx context.Context, c Cluster, name string, lsn uint64, deadline time.Time, progress func(string)) error {
	said := false
	for {
		if view, err := c.Show(ctx); err == nil {
			for _, n := range view.GetNodes() {
				if n.Name == name && n.GetPostgres().GetReplayLsn() >= lsn {
					return nil
				}
			}
		}
		if !said {
			progress(fmt.Sprintf("  waiting for %s to replay the primary's WAL up to %s (its new settings)", name, fsm.FormatLSN(lsn)))
			said = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has not replayed the primary's WAL up to %s, where its new settings are: restarting it now would fail (a standby may not run them lower than its pg_control holds); see `hasidecar cluster show`", name, fsm.FormatLSN(lsn))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to replay up to %s: %w", name, fsm.FormatLSN(lsn), ctx.Err())
		case <-time.After(PollInterval):
		}
	}
}

// switchoverRestart is a rolling restart's last step: a switchover from
// primary to the best standby, which restarts the former primary as a
// standby. It answers the new primary.
func switchoverRestart(ctx context.Context, c Cluster, primary string, deadline time.Time, step, steps int, progress func(string)) (string, error) {
	view, err := c.Show(ctx)
	if err != nil {
		return "", fmt.Errorf("read the cluster before the switchover: %w", err)
	}
	to := BestSwitchoverTarget(view, primary)
	if to == "" {
		return "", fmt.Errorf("no standby streams that could take over from %s: the standbys are restarted; restart %s in place with `hasidecar restart --node %s`", primary, primary, primary)
	}
	progress(fmt.Sprintf("[%d/%d] switching over from %s to %s", step, steps, primary, to))
	before := postmasterStart(view, primary)
	resp, err := c.Switchover(ctx, to, SwitchoverTimeout)
	if err != nil {
		return "", fmt.Errorf("switch over to %s: %w", to, err)
	}
	if !resp.Ok {
		return "", fmt.Errorf("switchover to %s failed: %s", to, resp.Details)
	}
	progress(fmt.Sprintf("switchover done (term %d): %s", resp.Term, resp.Details))
	if err := waitRestarted(ctx, c, primary, before, true, deadline, progress); err != nil {
		return "", err
	}
	return to, nil
}

// restartNode asks n's own sidecar to restart its Postgres and waits until
// it is back in its role.
func restartNode(ctx context.Context, c Cluster, n *pb.NodeView, deadline time.Time, progress func(string)) error {
	resp, err := c.Restart(ctx, n)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	return waitRestarted(ctx, c, n.Name, resp.PostmasterStartUnixMs, resp.Role != pb.NodeRole_NODE_ROLE_PRIMARY, deadline, progress)
}

// waitRestarted waits until name runs a postmaster other than the one that
// started at before (unix ms), in recovery and streaming when standby,
// else writable, with no setting waiting for a restart; it reports what it
// sees while it waits.
func waitRestarted(ctx context.Context, c Cluster, name string, before int64, standby bool, deadline time.Time, progress func(string)) error {
	last := ""
	for {
		view, err := c.Show(ctx)
		if err == nil {
			for _, n := range view.Nodes {
				if n.Name != name {
					continue
				}
				pg := n.GetPostgres()
				restarted := pg.GetRunning() && pg.GetPostmasterStartUnixMs() != before
				back := restarted && (standby == pg.GetInRecovery()) && (!standby || pg.GetWalReceiverStatus() == "streaming")
				if back && len(pg.GetPendingRestart()) == 0 {
					progress(fmt.Sprintf("  %s is back: %s", name, n.Status))
					return nil
				}
				line := "  " + name + ": " + n.Status
				if back {
					line += ", still pending: " + strings.Join(pg.GetPendingRestart(), ", ")
				}
				if line != last {
					progress(line)
					last = line
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not back after its restart: see `hasidecar cluster show` and its log", name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be back: %w", name, ctx.Err())
		case <-time.After(PollInterval):
		}
	}
}

// BestSwitchoverTarget is the streaming standby with the least lag (then
// the highest priority) that could be promoted, or "".
func BestSwitchoverTarget(view *pb.ShowResponse, primary string) string {
	var cands []*pb.NodeView
	for _, n := range view.GetNodes() {
		pg := n.GetPostgres()
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || n.Name == primary || n.Role != pb.NodeRole_NODE_ROLE_STANDBY ||
			n.Maintenance || n.Priority <= 0 || slices.Contains(n.Tags, "nofailover") ||
			!pg.GetRunning() || pg.GetWalReceiverStatus() != "streaming" || n.LagBytes < 0 {
			continue
		}
		cands = append(cands, n)
	}
	if len(cands) == 0 {
		return ""
	}
	slices.SortStableFunc(cands, func(a, b *pb.NodeView) int {
		if c := cmp.Compare(a.LagBytes, b.LagBytes); c != 0 {
			return c
		}
		return cmp.Compare(b.Priority, a.Priority)
	})
	return cands[0].Name
}

func postmasterStart(view *pb.ShowResponse, name string) int64 {
	for _, n := range view.GetNodes() {
		if n.Name == name {
			return n.GetPostgres().GetPostmasterStartUnixMs()
		}
	}
	return 0
}
