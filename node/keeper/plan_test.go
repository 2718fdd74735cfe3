package keeper

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// Fixtures for the reconciler's table: node 1 ("a") is the primary of term 7,
// this node is 2 ("b").
const (
	planTestTerm   = 7
	planTestSysID  = 7000000000000000001
	planForeignSys = 7000000000000000099
)

func planTestPrimary() *pb.Node {
	return &pb.Node{Id: 1, Name: "a", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Priority: 100, Active: true}
}

// planTestMe is this node registered as an active standby of node 1.
func planTestMe() *pb.Node {
	return &pb.Node{Id: 2, Name: "b", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_STANDBY, UpstreamId: 1, Priority: 100, Active: true}
}

// planTestMeAsPrimary is this node as the FSM's primary. It is a distinct
// pointer from Me on purpose: plan must compare by id.
func planTestMeAsPrimary() *pb.Node {
	return &pb.Node{Id: 2, Name: "b", Kind: pb.NodeKind_NODE_KIND_DATA, Role: pb.NodeRole_NODE_ROLE_PRIMARY, Priority: 100, Active: true}
}

// desiredStandby: this node is a registered standby of "a".
func desiredStandby() desired {
	return desired{ClusterSysID: planTestSysID, Term: planTestTerm, Me: planTestMe(), Primary: planTestPrimary()}
}

// desiredPrimary: this node is the primary and holds a valid lease.
func desiredPrimary() desired {
	me := planTestMeAsPrimary()
	return desired{ClusterSysID: planTestSysID, Term: planTestTerm, Me: me, Primary: planTestMeAsPrimary(), LeaseValid: true, PromoteTimeline: 3}
}

// Observations of this node's Postgres.
var (
	obsEmpty          = observed{Dir: dirMissing}
	obsStoppedPrimary = observed{Dir: dirValid, SysID: planTestSysID, Timeline: 3}
	obsStoppedStandby = observed{Dir: dirValid, SysID: planTestSysID, Timeline: 3, StandbySignal: true}
	obsWritable       = observed{Dir: dirValid, SysID: planTestSysID, Timeline: 3, Running: true}
	obsStreaming      = observed{Dir: dirValid, SysID: planTestSysID, Timeline: 3, Running: true, InRecovery: true, StandbySignal: true, Streaming: true}
	obsNotStreaming   = observed{Dir: dirValid, SysID: planTestSysID, Timeline: 3, Running: true, InRecovery: true, StandbySignal: true}
)

// describeAction renders an action compactly, e.g. "start standby up=1" or
// "register-standby up=1 event=node_rejoin".
func describeAction(a action) string {
	s := a.Kind.String()
	if a.AsStandby {
		s += " standby"
	}
	if a.Upstream != nil {
		s += fmt.Sprintf(" up=%d", a.Upstream.Id)
	}
	if a.EventType != "" {
		s += " event=" + a.EventType
	}
	return s
}

func describeActions(acts []action) []string {
	out := []string{}
	for _, a := range acts {
		out = append(out, describeAction(a))
	}
	return out
}

func TestPlanTable(t *testing.T) {
	type tc struct {
		name   string
		d      desired
		o      observed
		want   []string // describeAction of every action, in order
		reason string   // substring of the sentence
	}
	with := func(d desired, f func(*desired)) desired { f(&d); return d }
	obs := func(o observed, f func(*observed)) observed { f(&o); return o }
	me := func(f func(*pb.Node)) desired {
		d := desiredStandby()
		f(d.Me)
		return d
	}
	start := []string{"configure standby up=1", "start standby up=1"}

	cases := []tc{
		// Guards that come before the role.
		{
			name:   "not a Postgres data directory: nothing, even if it looks running",
			d:      desiredPrimary(),
			o:      observed{Dir: dirNotPostgres, Running: true},
			want:   []string{},
			reason: "not a Postgres data directory",
		},
		{
			name:   "not a Postgres data directory on a standby",
			d:      desiredStandby(),
			o:      observed{Dir: dirNotPostgres},
			want:   []string{},
			reason: "nothing was changed",
		},
		{
			name:   "foreign system identifier, running: stop",
			d:      desiredStandby(),
			o:      obs(obsStreaming, func(o *observed) { o.SysID = planForeignSys }),
			want:   []string{"stop"},
			reason: fmt.Sprintf("belongs to another cluster (system identifier %d, this cluster's is %d)", uint64(planForeignSys), uint64(planTestSysID)),
		},
		{
			name:   "foreign system identifier, running on the lease-holding primary: stop",
			d:      desiredPrimary(),
			o:      obs(obsWritable, func(o *observed) { o.SysID = planForeignSys }),
			want:   []string{"stop"},
			reason: "refusing to use it",
		},
		{
			name:   "foreign system identifier, not running: nothing",
			d:      desiredStandby(),
			o:      obs(obsStoppedStandby, func(o *observed) { o.SysID = planForeignSys }),
			want:   []string{},
			reason: "belongs to another cluster",
		},
		{
			name:   "foreign system identifier on an unregistered node: nothing",
			d:      with(desiredStandby(), func(d *desired) { d.Me = nil }),
			o:      obs(obsStoppedStandby, func(o *observed) { o.SysID = planForeignSys }),
			want:   []string{},
			reason: "another cluster",
		},
		{
			name:   "local system identifier unknown is not foreign",
			d:      desiredStandby(),
			o:      obs(obsStoppedStandby, func(o *observed) { o.SysID = 0 }),
			want:   start,
			reason: `starting as a standby of "a"`,
		},
		{
			name:   "cluster system identifier not recorded yet: any local one is accepted",
			d:      with(desiredStandby(), func(d *desired) { d.ClusterSysID = 0 }),
			o:      obs(obsStoppedStandby, func(o *observed) { o.SysID = planForeignSys }),
			want:   start,
			reason: "starting as a standby",
		},
		{
			name:   "unregistered: wait",
			d:      with(desiredStandby(), func(d *desired) { d.Me = nil }),
			o:      obsStoppedStandby,
			want:   []string{},
			reason: "waiting to be registered",
		},

		// This node is the primary.
		{
			name:   "primary, empty dir, no system identifier yet: initdb",
			d:      with(desiredPrimary(), func(d *desired) { d.ClusterSysID = 0 }),
			o:      obsEmpty,
			want:   []string{"initdb"},
			reason: "initialising a new Postgres cluster",
		},
		{
			name:   "primary, empty dir, cluster has a system identifier: wait for failover",
			d:      desiredPrimary(),
			o:      obsEmpty,
			want:   []string{},
			reason: "data directory is empty: waiting for a failover",
		},
		{
			name:   "primary without a valid lease, running writable: fence",
			d:      with(desiredPrimary(), func(d *desired) { d.LeaseValid = false }),
			o:      obsWritable,
			want:   []string{"stop"},
			reason: "fencing: the lease is not held",
		},
		{
			name:   "primary without a valid lease, stopped: wait",
			d:      with(desiredPrimary(), func(d *desired) { d.LeaseValid = false }),
			o:      obsStoppedPrimary,
			want:   []string{},
			reason: "waiting for a valid lease",
		},
		{
			name:   "primary without a valid lease, running in recovery: wait, no promote",
			d:      with(desiredPrimary(), func(d *desired) { d.LeaseValid = false }),
			o:      obsStreaming,
			want:   []string{},
			reason: "waiting for a valid lease before accepting writes",
		},
		{
			name:   "primary stopped, last start failed: wait",
			d:      desiredPrimary(),
			o:      obs(obsStoppedPrimary, func(o *observed) { o.StartFailed = true }),
			want:   []string{},
			reason: "Postgres failed to start",
		},
		{
			name:   "primary stopped with standby.signal, start failed: wait",
			d:      desiredPrimary(),
			o:      obs(obsStoppedStandby, func(o *observed) { o.StartFailed = true }),
			want:   []string{},
			reason: "failed to start: see its log",
		},
		{
			name:   "primary stopped with standby.signal: start in recovery without upstream",
			d:      desiredPrimary(),
			o:      obsStoppedStandby,
			want:   []string{"configure standby", "start standby"},
			reason: "starting in recovery before promotion",
		},
		{
			name:   "primary stopped without standby.signal: start as primary",
			d:      desiredPrimary(),
			o:      obsStoppedPrimary,
			want:   []string{"configure", "start"},
			reason: "starting as primary",
		},
		{
			name:   "primary running in recovery on the chosen timeline: promote",
			d:      desiredPrimary(),
			o:      obsStreaming,
			want:   []string{"configure standby", "promote"},
			reason: "promoting",
		},
		{
			name:   "primary running in recovery, no chosen timeline recorded: promote",
			d:      with(desiredPrimary(), func(d *desired) { d.PromoteTimeline = 0 }),
			o:      obs(obsStreaming, func(o *observed) { o.Timeline = 9 }),
			want:   []string{"configure standby", "promote"},
			reason: "promoting",
		},
		{
			name:   "primary running in recovery, own timeline unknown: promote",
			d:      desiredPrimary(),
			o:      obs(obsStreaming, func(o *observed) { o.Timeline = 0 }),
			want:   []string{"configure standby", "promote"},
			reason: "promoting",
		},
		{
			name:   "primary running in recovery on another timeline: refuse to promote",
			d:      desiredPrimary(),
			o:      obs(obsStreaming, func(o *observed) { o.Timeline = 4 }),
			want:   []string{},
			reason: "refusing to promote: this node is on timeline 4, the leader chose it on timeline 3",
		},
		{
			name:   "healthy primary, system identifier recorded",
			d:      desiredPrimary(),
			o:      obsWritable,
			want:   []string{"configure", "primary-duties"},
			reason: "running as primary",
		},
		{
			name:   "healthy primary, system identifier not recorded yet",
			d:      with(desiredPrimary(), func(d *desired) { d.ClusterSysID = 0 }),
			o:      obsWritable,
			want:   []string{"configure", "record-sysid", "primary-duties"},
			reason: "running as primary",
		},

		// No primary yet.
		{
			name:   "no primary, claim allowed: claim",
			d:      with(desiredStandby(), func(d *desired) { d.Primary = nil; d.MayClaimPrimary = true }),
			o:      obsEmpty,
			want:   []string{"claim-primary"},
			reason: "claiming the bootstrap primary role",
		},
		{
			name:   "no primary, claim allowed, stopped data dir to adopt: claim",
			d:      with(desiredStandby(), func(d *desired) { d.Primary = nil; d.MayClaimPrimary = true }),
			o:      obsStoppedPrimary,
			want:   []string{"claim-primary"},
			reason: "claiming",
		},
		{
			name:   "no primary, claim not allowed: wait",
			d:      with(desiredStandby(), func(d *desired) { d.Primary = nil }),
			o:      obsEmpty,
			want:   []string{},
			reason: "waiting for a primary",
		},
		{
			name:   "no primary, running in recovery, claim not allowed: wait",
			d:      with(desiredStandby(), func(d *desired) { d.Primary = nil }),
			o:      obsStreaming,
			want:   []string{},
			reason: "waiting for a primary",
		},
		{
			name:   "no primary, writable: fence before claiming",
			d:      with(desiredStandby(), func(d *desired) { d.Primary = nil; d.MayClaimPrimary = true }),
			o:      obsWritable,
			want:   []string{"stop"},
			reason: "fencing: Postgres is writable but the cluster has no primary",
		},

		// Another node is the primary.
		{
			name:   "writable while another node is the primary: fence",
			d:      desiredStandby(),
			o:      obsWritable,
			want:   []string{"stop"},
			reason: `fencing: Postgres is writable but "a" is the primary in term 7`,
		},
		{
			name:   "former primary still writable after failover: fence",
			d:      me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_PRIMARY; n.Active = false }),
			o:      obsWritable,
			want:   []string{"stop"},
			reason: "fencing",
		},
		{
			name:   "empty dir: clone, configure, start",
			d:      desiredStandby(),
			o:      obsEmpty,
			want:   []string{"clone up=1", "configure standby up=1", "start standby up=1"},
			reason: `cloning from "a"`,
		},
		{
			name:   "stopped former primary without standby.signal: rewind first",
			d:      me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_PRIMARY; n.Active = false }),
			o:      obsStoppedPrimary,
			want:   []string{"rewind up=1", "configure standby up=1", "start standby up=1"},
			reason: `rewinding from "a" to rejoin as a standby`,
		},
		{
			name:   "stopped former primary on a full disk: waits for space before rewinding",
			d:      with(me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_STANDBY; n.Active = false }), func(d *desired) { d.DiskFull = true }),
			o:      obsStoppedPrimary,
			want:   []string{},
			reason: `the disk is full, waiting for space before rewinding from "a"`,
		},
		{
			name:   "stopped standby whose signal file is gone: rewind first",
			d:      desiredStandby(),
			o:      obsStoppedPrimary,
			want:   []string{"rewind up=1", "configure standby up=1", "start standby up=1"},
			reason: "rewinding",
		},
		{
			name:   "stopped standby: configure and start",
			d:      desiredStandby(),
			o:      obsStoppedStandby,
			want:   start,
			reason: `starting as a standby of "a"`,
		},
		{
			name:   "stopped standby flagged stuck: stuck only matters while running",
			d:      desiredStandby(),
			o:      obs(obsStoppedStandby, func(o *observed) { o.Stuck = true }),
			want:   start,
			reason: "starting as a standby",
		},
		{
			name:   "stopped standby, start failed: wait",
			d:      desiredStandby(),
			o:      obs(obsStoppedStandby, func(o *observed) { o.StartFailed = true }),
			want:   []string{},
			reason: "Postgres failed to start: see its log",
		},
		{
			name:   "stopped former primary, start failed: wait, no rewind",
			d:      desiredStandby(),
			o:      obs(obsStoppedPrimary, func(o *observed) { o.StartFailed = true }),
			want:   []string{},
			reason: "failed to start",
		},
		{
			name:   "stuck standby: stop, rewind, configure, start",
			d:      desiredStandby(),
			o:      obs(obsNotStreaming, func(o *observed) { o.Stuck = true }),
			want:   []string{"stop", "rewind up=1", "configure standby up=1", "start standby up=1"},
			reason: `not streaming from "a": rewinding`,
		},
		{
			name:   "maintenance, streaming: nothing",
			d:      me(func(n *pb.Node) { n.Maintenance = true }),
			o:      obsStreaming,
			want:   []string{},
			reason: "in maintenance: leaving Postgres alone",
		},
		{
			name:   "maintenance, stopped by the operator: not started",
			d:      me(func(n *pb.Node) { n.Maintenance = true }),
			o:      obsStoppedStandby,
			want:   []string{},
			reason: "in maintenance",
		},
		{
			name:   "maintenance, data directory gone: not cloned",
			d:      me(func(n *pb.Node) { n.Maintenance = true }),
			o:      obsEmpty,
			want:   []string{},
			reason: "in maintenance",
		},
		{
			name:   "maintenance and marked needs_reclone: left alone",
			d:      me(func(n *pb.Node) { n.Maintenance, n.NeedsReclone = true, true }),
			o:      obsStreaming,
			want:   []string{},
			reason: "in maintenance",
		},
		{
			name:   "maintenance, but Postgres writable: still fenced",
			d:      me(func(n *pb.Node) { n.Maintenance = true }),
			o:      obsWritable,
			want:   []string{"stop"},
			reason: "fencing: Postgres is writable",
		},
		{
			name:   "marked needs_reclone, streaming: stop, set the data directory aside",
			d:      me(func(n *pb.Node) { n.NeedsReclone, n.NeedsRecloneReason = true, "slot dropped" }),
			o:      obsStreaming,
			want:   []string{"stop", "set-aside"},
			reason: "needs a re-clone (slot dropped): setting the data directory aside",
		},
		{
			name:   "marked needs_reclone, stopped former primary: set aside, no rewind",
			d:      me(func(n *pb.Node) { n.NeedsReclone = true }),
			o:      obsStoppedPrimary,
			want:   []string{"set-aside"},
			reason: "needs a re-clone",
		},
		{
			name:   "marked needs_reclone, data directory set aside: clone",
			d:      me(func(n *pb.Node) { n.NeedsReclone = true }),
			o:      obsEmpty,
			want:   []string{"clone up=1", "configure standby up=1", "start standby up=1"},
			reason: `cloning from "a"`,
		},
		{
			name:   "marked needs_reclone, cloned afresh and streaming: clear the mark, then register",
			d:      with(me(func(n *pb.Node) { n.NeedsReclone = true; n.Active = false }), func(d *desired) { d.Recloned = true }),
			o:      obsStreaming,
			want:   []string{"configure standby up=1", "clear-reclone", "register-standby up=1 event=node_rejoin"},
			reason: `running as a standby of "a"`,
		},
		{
			name:   "running registered standby, streaming: configure only",
			d:      desiredStandby(),
			o:      obsStreaming,
			want:   []string{"configure standby up=1"},
			reason: `running as a standby of "a"`,
		},
		{
			name:   "running registered standby, not streaming yet: configure only",
			d:      desiredStandby(),
			o:      obsNotStreaming,
			want:   []string{"configure standby up=1"},
			reason: "running as a standby",
		},
		{
			name:   "unregistered role, streaming: standby_register",
			d:      me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_UNSPECIFIED; n.UpstreamId = 0; n.Active = false }),
			o:      obsStreaming,
			want:   []string{"configure standby up=1", "register-standby up=1 event=standby_register"},
			reason: "running as a standby",
		},
		{
			name:   "unregistered role, not streaming: standby_register anyway",
			d:      me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_UNSPECIFIED; n.UpstreamId = 0; n.Active = false }),
			o:      obsNotStreaming,
			want:   []string{"configure standby up=1", "register-standby up=1 event=standby_register"},
			reason: "running as a standby",
		},
		{
			name:   "inactive standby, streaming: node_rejoin",
			d:      me(func(n *pb.Node) { n.Active = false }),
			o:      obsStreaming,
			want:   []string{"configure standby up=1", "register-standby up=1 event=node_rejoin"},
			reason: "running as a standby",
		},
		{
			name:   "inactive standby, not streaming: no event yet",
			d:      me(func(n *pb.Node) { n.Active = false }),
			o:      obsNotStreaming,
			want:   []string{"configure standby up=1"},
			reason: "running as a standby",
		},
		{
			name:   "inactive former primary, streaming: node_rejoin",
			d:      me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_PRIMARY; n.UpstreamId = 0; n.Active = false }),
			o:      obsStreaming,
			want:   []string{"configure standby up=1", "register-standby up=1 event=node_rejoin"},
			reason: "running as a standby",
		},
		{
			name:   "standby following another upstream, streaming: standby_follow",
			d:      me(func(n *pb.Node) { n.UpstreamId = 3 }),
			o:      obsStreaming,
			want:   []string{"configure standby up=1", "register-standby up=1 event=standby_follow"},
			reason: "running as a standby",
		},
		{
			name:   "standby following another upstream, not streaming: no event yet",
			d:      me(func(n *pb.Node) { n.UpstreamId = 3 }),
			o:      obsNotStreaming,
			want:   []string{"configure standby up=1"},
			reason: "running as a standby",
		},
		{
			name:   "active former primary role, streaming: standby_follow",
			d:      me(func(n *pb.Node) { n.Role = pb.NodeRole_NODE_ROLE_PRIMARY; n.UpstreamId = 0 }),
			o:      obsStreaming,
			want:   []string{"configure standby up=1", "register-standby up=1 event=standby_follow"},
			reason: "running as a standby",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acts, why := plan(tc.d, tc.o)
			if got := describeActions(acts); !slices.Equal(got, tc.want) {
				t.Errorf("actions = %q, want %q (reason %q)", got, tc.want, why)
			}
			if !strings.Contains(why, tc.reason) {
				t.Errorf("reason = %q, want it to contain %q", why, tc.reason)
			}
			for i, a := range acts {
				if a.Term != tc.d.Term {
					t.Errorf("action %d (%s) has term %d, want %d", i, a.Kind, a.Term, tc.d.Term)
				}
			}
		})
	}
}

// TestPlanUpstreamIsThePrimary: the standby actions carry the FSM's primary
// row itself, so the executor builds primary_conninfo from it.
func TestPlanUpstreamIsThePrimary(t *testing.T) {
	d := desiredStandby()
	acts, _ := plan(d, obsEmpty)
	for _, a := range acts {
		if a.Upstream != d.Primary {
			t.Errorf("%s: upstream %v, want the primary row %v", a.Kind, a.Upstream, d.Primary)
		}
	}
}

// TestPlanDoesNotMutateInput: plan is pure.
func TestPlanDoesNotMutateInput(t *testing.T) {
	d := desiredStandby()
	d.Me.Active = false
	before := desiredStandby()
	before.Me.Active = false
	plan(d, obsStreaming)
	if d.Term != before.Term || d.ClusterSysID != before.ClusterSysID || d.Me.Active != before.Me.Active ||
		d.Me.Role != before.Me.Role || d.Me.UpstreamId != before.Me.UpstreamId || d.Primary.Id != before.Primary.Id {
		t.Fatalf("plan changed its input: %+v", d)
	}
}

// Generators for the property tests: small domains so that the
// interesting combinations (same ids, equal system identifiers, matching
// timelines) come up often.

func genPlanNode(id uint32) *rapid.Generator[*pb.Node] {
	return rapid.Custom(func(t *rapid.T) *pb.Node {
		return &pb.Node{
			Id:         id,
			Name:       fmt.Sprintf("n%d", id),
			Kind:       pb.NodeKind_NODE_KIND_DATA,
			Role:       rapid.SampledFrom([]pb.NodeRole{pb.NodeRole_NODE_ROLE_UNSPECIFIED, pb.NodeRole_NODE_ROLE_PRIMARY, pb.NodeRole_NODE_ROLE_STANDBY, pb.NodeRole_NODE_ROLE_WITNESS}).Draw(t, "role"),
			UpstreamId: rapid.SampledFrom([]uint32{0, 1, 2, 3}).Draw(t, "upstream"),
			Active:     rapid.Bool().Draw(t, "active"),
			Priority:   rapid.Int32Range(0, 2).Draw(t, "priority"),
		}
	})
}

var genDesired = rapid.Custom(func(t *rapid.T) desired {
	d := desired{
		ClusterSysID:    rapid.SampledFrom([]uint64{0, 100, 200}).Draw(t, "clusterSysID"),
		Term:            rapid.Uint64Range(0, 4).Draw(t, "term"),
		MayClaimPrimary: rapid.Bool().Draw(t, "mayClaim"),
		LeaseValid:      rapid.Bool().Draw(t, "leaseValid"),
		PromoteTimeline: rapid.Uint32Range(0, 3).Draw(t, "promoteTimeline"),
	}
	if rapid.IntRange(0, 5).Draw(t, "registered") > 0 {
		d.Me = genPlanNode(2).Draw(t, "me")
	}
	switch rapid.IntRange(0, 3).Draw(t, "primary") {
	case 0: // none
	case 1: // this node (a distinct row with the same id)
		d.Primary = genPlanNode(2).Draw(t, "primaryMe")
	case 2:
		d.Primary = d.Me // the very same row, or nil when unregistered
	default:
		d.Primary = genPlanNode(rapid.SampledFrom([]uint32{1, 3}).Draw(t, "primaryID")).Draw(t, "primaryOther")
	}
	return d
})

var genObserved = rapid.Custom(func(t *rapid.T) observed {
	return observed{
		Dir:           rapid.SampledFrom([]dataDirKind{dirMissing, dirValid, dirNotPostgres}).Draw(t, "dir"),
		SysID:         rapid.SampledFrom([]uint64{0, 100, 200}).Draw(t, "sysID"),
		Running:       rapid.Bool().Draw(t, "running"),
		InRecovery:    rapid.Bool().Draw(t, "inRecovery"),
		StandbySignal: rapid.Bool().Draw(t, "standbySignal"),
		Timeline:      rapid.Uint32Range(0, 3).Draw(t, "timeline"),
		Streaming:     rapid.Bool().Draw(t, "streaming"),
		Stuck:         rapid.Bool().Draw(t, "stuck"),
		StartFailed:   rapid.Bool().Draw(t, "startFailed"),
	}
})

func planIsPrimary(d desired) bool {
	return d.Me != nil && d.Primary != nil && d.Primary.Id == d.Me.Id
}

func planForeign(d desired, o observed) bool {
	return o.Dir == dirValid && d.ClusterSysID != 0 && o.SysID != 0 && o.SysID != d.ClusterSysID
}

// (a) promote, a writable start and initdb only on the FSM's primary.
func TestPlanPropertyPrimaryOnlyActions(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		acts, why := plan(d, o)
		if planIsPrimary(d) {
			return
		}
		for _, a := range acts {
			if a.Kind == actPromote || a.Kind == actInitDB || (a.Kind == actStart && !a.AsStandby) {
				t.Fatalf("%s planned on a node that is not the primary: %q (%s)", describeAction(a), describeActions(acts), why)
			}
		}
	})
}

// (b) a writable start only with a valid lease.
func TestPlanPropertyWritableStartNeedsLease(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		acts, why := plan(d, o)
		for _, a := range acts {
			if a.Kind == actStart && !a.AsStandby && !d.LeaseValid {
				t.Fatalf("writable start without a valid lease: %q (%s)", describeActions(acts), why)
			}
			if a.Kind == actPromote && !d.LeaseValid {
				t.Fatalf("promote without a valid lease: %q (%s)", describeActions(acts), why)
			}
		}
	})
}

// (c) a writable Postgres that may not accept writes is stopped first.
//
// Restricted to a valid data directory (a running postmaster has one; with
// dirNotPostgres property (d) wins) and to a registered node: an unregistered
// node's plan is "wait" and its fencing is left to the lease watchdog
// (lease.go), which stops any writable Postgres without a valid lease.
func TestPlanPropertyWritableWithoutRightIsStopped(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		o.Dir, o.Running, o.InRecovery = dirValid, true, false
		if d.Me == nil {
			d.Me = genPlanNode(2).Draw(t, "me")
		}
		acts, why := plan(d, o)
		if planIsPrimary(d) && d.LeaseValid && !planForeign(d, o) {
			return // the lease-holding primary may write
		}
		if len(acts) == 0 || acts[0].Kind != actStop {
			t.Fatalf("writable Postgres not stopped first: %q (%s)", describeActions(acts), why)
		}
	})
}

// (d) a data directory that is not Postgres's is never touched.
func TestPlanPropertyNotPostgresDirUntouched(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		o.Dir = dirNotPostgres
		if acts, why := plan(d, o); len(acts) != 0 {
			t.Fatalf("actions for a non-Postgres directory: %q (%s)", describeActions(acts), why)
		}
	})
}

// (e) another cluster's data directory: at most a stop.
func TestPlanPropertyForeignSysIDAtMostStop(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		o.Dir = dirValid
		d.ClusterSysID = rapid.SampledFrom([]uint64{100, 200}).Draw(t, "clusterSysID")
		o.SysID = 300
		acts, why := plan(d, o)
		if len(acts) > 1 || (len(acts) == 1 && acts[0].Kind != actStop) {
			t.Fatalf("foreign data directory got %q (%s)", describeActions(acts), why)
		}
		if o.Running != (len(acts) == 1) {
			t.Fatalf("running=%v but actions %q", o.Running, describeActions(acts))
		}
	})
}

// (f) every action carries the term it was planned in (the fencing token).
func TestPlanPropertyTermIsFencingToken(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		acts, _ := plan(d, o)
		for i, a := range acts {
			if a.Term != d.Term {
				t.Fatalf("action %d %s has term %d, want %d", i, a.Kind, a.Term, d.Term)
			}
		}
	})
}

// Every plan explains itself, and standby actions always name an upstream.
func TestPlanPropertyReasonAndUpstream(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d, o := genDesired.Draw(t, "d"), genObserved.Draw(t, "o")
		acts, why := plan(d, o)
		if why == "" {
			t.Fatalf("empty reason for %q", describeActions(acts))
		}
		for _, a := range acts {
			switch a.Kind {
			case actClone, actRewind, actRegisterStandby:
				if a.Upstream == nil || d.Primary == nil || a.Upstream.Id != d.Primary.Id {
					t.Fatalf("%s without the primary as upstream: %q", a.Kind, describeActions(acts))
				}
			case actConfigure, actStart:
				if a.Upstream != nil && (!a.AsStandby || d.Primary == nil || a.Upstream.Id != d.Primary.Id) {
					t.Fatalf("%s with an unexpected upstream: %q", a.Kind, describeActions(acts))
				}
			}
		}
	})
}
