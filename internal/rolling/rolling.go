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
	Standbys    []*pb.NodeView // restarted one by one, first
	WithPrimary bool           // the primary is restarted too
	Rolling     bool           // ... by a switchover (else in place: only with --node)
	Steps       []string       // one line per step
	Skipped     []string       // nodes left out, and why
}

// NewPlan builds the restart of the nodes in view: only the node with id
// only (0: all), only those with pending_restart when pending. A plan with
// no steps restarts nothing.
func NewPlan(view *pb.ShowResponse, only uint32, pending bool) (*Plan, error) {
	p := &Plan{}
	var targets []*pb.NodeView
	for _, n := range view.GetNodes() {
		if n.Kind != pb.NodeKind_NODE_KIND_DATA || (only != 0 && n.Id != only) {
			continue
		}
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY {
			p.Primary = n
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
	for _, n := range targets {
		if p.Primary != nil && n.Id == p.Primary.Id {
			p.WithPrimary = true
		} else {
			p.Standbys = append(p.Standbys, n)
		}
	}
	for _, n := range p.Standbys {
		p.Steps = append(p.Steps, "restart "+n.Name)
	}
	p.Rolling = p.WithPrimary && only == 0
	switch {
	case p.Rolling:
		p.Steps = append(p.Steps, fmt.Sprintf("switch over from %s to the best standby, which restarts %s as a standby", p.Primary.Name, p.Primary.Name))
	case p.WithPrimary:
		p.Steps = append(p.Steps, fmt.Sprintf("restart the primary %s in place (writes pause while it restarts; no failover)", p.Primary.Name))
	}
	return p, nil
}

// Run carries the plan out, step by step, printing progress; it gives up
// at deadline. It returns what it did, in one line.
func (p *Plan) Run(ctx context.Context, c Cluster, deadline time.Time, progress func(string)) (string, error) {
	if len(p.Steps) == 0 {
		return "nothing to restart: no node has settings waiting for a restart", nil
	}
	for i, n := range p.Standbys {
		progress(fmt.Sprintf("[%d/%d] restarting %s", i+1, len(p.Steps), n.Name))
		if err := restartNode(ctx, c, n, deadline, progress); err != nil {
			return "", err
		}
	}
	if !p.WithPrimary {
		return fmt.Sprintf("restarted %s", names(p.Standbys)), nil
	}
	primary := p.Primary
	if !p.Rolling {
		progress(fmt.Sprintf("[%d/%d] restarting the primary %s in place", len(p.Steps), len(p.Steps), primary.Name))
		if err := restartNode(ctx, c, primary, deadline, progress); err != nil {
			return "", err
		}
		return fmt.Sprintf("restarted the primary %s in place", primary.Name), nil
	}
	view, err := c.Show(ctx)
	if err != nil {
		return "", fmt.Errorf("read the cluster before the switchover: %w", err)
	}
	to := BestSwitchoverTarget(view, primary.Name)
	if to == "" {
		return "", fmt.Errorf("no standby streams that could take over from %s: the standbys are restarted; restart %s in place with `hasidecar restart --node %s`", primary.Name, primary.Name, primary.Name)
	}
	progress(fmt.Sprintf("[%d/%d] switching over from %s to %s", len(p.Steps), len(p.Steps), primary.Name, to))
	before := postmasterStart(view, primary.Name)
	resp, err := c.Switchover(ctx, to, SwitchoverTimeout)
	if err != nil {
		return "", fmt.Errorf("switch over to %s: %w", to, err)
	}
	if !resp.Ok {
		return "", fmt.Errorf("switchover to %s failed: %s", to, resp.Details)
	}
	progress(fmt.Sprintf("switchover done (term %d): %s", resp.Term, resp.Details))
	if err := waitRestarted(ctx, c, primary.Name, before, true, deadline, progress); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s is the primary; restarted %s", to, names(append(slices.Clone(p.Standbys), primary))), nil
}

func names(ns []*pb.NodeView) string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return strings.Join(out, ", ")
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
