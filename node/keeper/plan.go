package keeper

import (
	"fmt"

	"github.com/hasidecar/hasidecar/fsm"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The reconciler compares what the FSM says this node should be (desired)
// with what its Postgres is (observed) and plans the actions that close the
// gap: a table of (observed state, assigned role) → actions, in the manner of
// pg_auto_failover's KeeperFSM. plan is pure; pgagent.go executes.

// dataDirKind is what is on disk at the data directory.
type dataDirKind int

const (
	dirMissing dataDirKind = iota // missing or empty
	dirValid
	dirNotPostgres
)

// observed is the local Postgres as the executor last saw it.
type observed struct {
	Dir           dataDirKind
	SysID         uint64 // from pg_controldata, when Dir is dirValid
	Running       bool
	InRecovery    bool
	StandbySignal bool
	Timeline      uint32
	Streaming     bool
	// Stuck: a running standby that has not streamed for a while although
	// its upstream is up (e.g. it diverged and needs a rewind).
	Stuck bool
	// StartFailed: the last start attempt failed; wait for the operator or
	// the retry interval.
	StartFailed bool
	// Adopt: a postmaster this process did not start runs on the data
	// directory under the guard a previous sidecar left running (nil:
	// none; Running is false then).
	Adopt *adoptable
}

// adoptable is a postmaster left running by the previous sidecar on this
// host, as its guard describes it.
type adoptable struct {
	PID      int    // the live postmaster of postmaster.pid
	GuardPID int    // the postmaster the guard says it guards
	Armed    bool   // the guard would kill it at its deadline: it may be writable
	Term     uint64 // the lease term of the guard's deadline
	InTime   bool   // armed and the deadline has not passed
}

// desired is what the FSM (and this node's lease) say.
type desired struct {
	ClusterSysID uint64
	Term         uint64
	Me           *pb.Node
	Primary      *pb.Node // nil before bootstrap; may be Me
	// MayClaimPrimary: no primary exists yet and this node may become the
	// bootstrap primary (see claimAllowed).
	MayClaimPrimary bool
	// LeaseValid: this node holds a lease whose local deadline has not passed.
	LeaseValid bool
	// HoldsLease: the FSM names this node the lease holder in the current term.
	HoldsLease bool
	// PromoteTimeline: the timeline the leader saw when it chose this node.
	PromoteTimeline uint32
	// SwitchoverFrom: a switchover away from this node (the primary) is in
	// flight; ShutdownReported: its shutdown checkpoint LSN is in the FSM.
	SwitchoverFrom, ShutdownReported bool
	// SkipRewind: this former primary stopped cleanly for the switchover
	// that made its upstream primary, and its data directory is as it left
	// it: it follows without pg_rewind.
	SkipRewind bool
	// ManualRejoin: wait for `hasidecar node rejoin` instead of rewinding.
	ManualRejoin bool
	// DiskFull: the local disk is full (disk.go): a former primary waits
	// for space before pg_rewind writes into its data directory.
	DiskFull bool
	// Recloned: this node cloned afresh since it was marked needs_reclone
	// (Me.NeedsReclone): it clears the mark instead of cloning again.
	Recloned bool
}

type actionKind int

const (
	actClaimPrimary    actionKind = iota // propose RegisterPrimary
	actInitDB                            // initdb a new cluster
	actClone                             // pg_basebackup from the primary
	actRewind                            // pg_rewind from the primary
	actConfigure                         // write the managed config, pg_hba, recovery settings for the role
	actStart                             // start Postgres
	actStop                              // fence: stop Postgres now
	actPromote                           // pg_promote
	actRecordSysID                       // propose SetSystemIdentifier
	actRegisterStandby                   // propose SetStandby
	actPrimaryDuties                     // slots, replication role
	actSwitchoverStop                    // checkpoint, clean stop for a switchover
	actReportShutdown                    // propose UpdateSwitchover with the shutdown checkpoint LSN
	actSetAside                          // move the data directory aside for a re-clone
	actClearReclone                      // propose SetNeedsReclone(false) after the re-clone
	actAdopt                             // take over the postmaster and guard a previous sidecar left running
)

func (k actionKind) String() string {
	return [...]string{"claim-primary", "initdb", "clone", "rewind", "configure", "start", "stop", "promote", "record-sysid", "register-standby", "primary-duties", "switchover-stop", "report-shutdown", "set-aside", "clear-reclone", "adopt"}[k]
}

// changesState: after this action the local Postgres is in another state,
// so the reconciler plans again at once.
func (k actionKind) changesState() bool {
	switch k {
	case actClaimPrimary, actInitDB, actClone, actRewind, actStart, actStop, actPromote, actSwitchoverStop, actReportShutdown, actSetAside, actAdopt:
		return true
	}
	return false
}

// action is one step. Term is the fencing token: the executor drops an
// action whose term is older than the FSM's when it runs.
type action struct {
	Kind actionKind
	Term uint64
	// AsStandby: for actConfigure/actStart, the instance is to run in
	// recovery (following Upstream, or with no upstream while it waits to
	// be promoted).
	AsStandby bool
	Upstream  *pb.Node
	// EventType for actRegisterStandby.
	EventType string
	// PID for actAdopt: the postmaster to take over; InheritLease: its
	// guard's deadline is this node's lease in the current term, which the
	// keeper takes as its own (AsStandby: the guard was disarmed).
	PID          int
	InheritLease bool
}

// plan returns the actions to run now, in order, and a sentence saying what
// the node is doing or waiting for.
func plan(d desired, o observed) ([]action, string) {
	if why := refusal(d, o); why != "" {
		var acts []action
		if o.Running && o.Dir == dirValid {
			acts = append(acts, action{Kind: actStop, Term: d.Term})
		}
		return acts, why
	}
	if o.Adopt != nil {
		return planAdopt(d, o)
	}
	if d.Me == nil {
		return nil, "waiting to be registered in the cluster"
	}
	if d.Primary != nil && d.Primary.Id == d.Me.Id {
		return planPrimary(d, o)
	}
	return planStandby(d, o)
}

// refusal says why the data directory is not one this node may use (not
// Postgres, or another cluster's); "" when it may.
func refusal(d desired, o observed) string {
	if o.Dir == dirNotPostgres {
		return "the data directory holds files but is not a Postgres data directory: nothing was changed; empty it or point postgres.data_dir elsewhere"
	}
	if o.Dir == dirValid && d.ClusterSysID != 0 && o.SysID != 0 && o.SysID != d.ClusterSysID {
		return fmt.Sprintf("the data directory belongs to another cluster (system identifier %d, this cluster's is %d): refusing to use it; nothing was changed", o.SysID, d.ClusterSysID)
	}
	return ""
}

// planAdopt decides about a postmaster the previous sidecar on this host
// left running under its guard (a restart or an upgrade of the sidecar).
// It is adopted only when it is this cluster's data directory's postmaster
// and the one its guard guards; it keeps accepting writes only when the
// guard's deadline is this node's lease in the current term and has not
// passed — else it is adopted to be stopped at once (the fence), and the
// table below decides its future from a stopped Postgres as after any
// fence. A disarmed guard's postmaster is a standby: adopted as one.
func planAdopt(d desired, o observed) ([]action, string) {
	ad, t := o.Adopt, d.Term
	switch {
	case ad.GuardPID != ad.PID:
		return nil, fmt.Sprintf("a postmaster (pid %d) runs on the data directory, but the guard left running guards pid %d: not adopting it; nothing was changed: stop it by hand (pg_ctl stop) and this sidecar starts its own", ad.PID, ad.GuardPID)
	case d.ClusterSysID == 0 || o.SysID == 0:
		return nil, fmt.Sprintf("a postmaster (pid %d) left running by the previous sidecar: waiting for the system identifiers of the cluster (%d) and of the data directory (%d) to check it before adopting it", ad.PID, d.ClusterSysID, o.SysID)
	case d.Me == nil:
		return nil, fmt.Sprintf("waiting to be registered before adopting the running postmaster (pid %d)", ad.PID)
	}
	primary := d.Primary != nil && d.Primary.Id == d.Me.Id
	act := action{Kind: actAdopt, Term: t, PID: ad.PID, AsStandby: !ad.Armed}
	switch {
	case !ad.Armed:
		return []action{act}, fmt.Sprintf("adopting the running standby postmaster (pid %d)", ad.PID)
	case primary && d.HoldsLease && ad.Term == t && ad.InTime:
		act.InheritLease = true
		return []action{act}, fmt.Sprintf("adopting the running primary postmaster (pid %d) and its lease of term %d", ad.PID, t)
	case ad.Term != t:
		return []action{act, {Kind: actStop, Term: t}}, fmt.Sprintf("adopting the running postmaster (pid %d) to fence it: its guard's deadline belongs to term %d, the cluster is in term %d", ad.PID, ad.Term, t)
	case !primary || !d.HoldsLease:
		return []action{act, {Kind: actStop, Term: t}}, fmt.Sprintf("adopting the running postmaster (pid %d) to fence it: this node does not hold the lease of term %d", ad.PID, t)
	}
	return []action{act, {Kind: actStop, Term: t}}, fmt.Sprintf("adopting the running postmaster (pid %d) to fence it: its guard's deadline has passed", ad.PID)
}

func planPrimary(d desired, o observed) ([]action, string) {
	t := d.Term
	if o.Dir == dirMissing {
		if d.ClusterSysID != 0 {
			return nil, "this node is the primary but its data directory is empty: waiting for a failover (the lease is released)"
		}
		return []action{{Kind: actInitDB, Term: t}}, "initialising a new Postgres cluster"
	}
	if d.SwitchoverFrom {
		switch {
		case o.Running && !o.InRecovery:
			return []action{{Kind: actSwitchoverStop, Term: t}}, "switching over: stopping cleanly"
		case o.Running:
			return []action{{Kind: actStop, Term: t}}, "switching over: stopping"
		case !d.ShutdownReported:
			return []action{{Kind: actReportShutdown, Term: t}}, "switching over: reporting the shutdown checkpoint"
		}
		return nil, "switching over: waiting for the target to promote"
	}
	if !d.LeaseValid {
		if o.Running && !o.InRecovery {
			return []action{{Kind: actStop, Term: t}}, "fencing: the lease is not held"
		}
		return nil, "waiting for a valid lease before accepting writes"
	}
	if !o.Running {
		if o.StartFailed {
			return nil, "Postgres failed to start: see its log"
		}
		if o.StandbySignal {
			// Promotion decided while Postgres was down: start in recovery
			// without an upstream, then promote.
			return []action{{Kind: actConfigure, Term: t, AsStandby: true}, {Kind: actStart, Term: t, AsStandby: true}}, "starting in recovery before promotion"
		}
		return []action{{Kind: actConfigure, Term: t}, {Kind: actStart, Term: t}}, "starting as primary"
	}
	if o.InRecovery {
		if d.PromoteTimeline != 0 && o.Timeline != 0 && o.Timeline != d.PromoteTimeline {
			return nil, fmt.Sprintf("refusing to promote: this node is on timeline %d, the leader chose it on timeline %d", o.Timeline, d.PromoteTimeline)
		}
		// Configure first, as a standby without an upstream: keep that
		// reload before pg_promote. With primary_conninfo still naming the
		// dead primary, the startup process can take the promote request
		// and then sleep wal_retrieve_retry_interval in its failed-stream
		// retry (measured: 1.0 s of a 1.2 s promotion, 2026-12-02).
		return []action{{Kind: actConfigure, Term: t, AsStandby: true}, {Kind: actPromote, Term: t}}, "promoting"
	}
	acts := []action{{Kind: actConfigure, Term: t}}
	if d.ClusterSysID == 0 {
		acts = append(acts, action{Kind: actRecordSysID, Term: t})
	}
	acts = append(acts, action{Kind: actPrimaryDuties, Term: t})
	return acts, "running as primary"
}

// maintenanceState is what a standby in maintenance is doing.
const maintenanceState = "in maintenance: leaving Postgres alone (`hasidecar node maintenance off` to resume)"

func planStandby(d desired, o observed) ([]action, string) {
	t := d.Term
	p := d.Primary
	if p == nil {
		if o.Running && !o.InRecovery {
			return []action{{Kind: actStop, Term: t}}, "fencing: Postgres is writable but the cluster has no primary"
		}
		if d.Me.GetMaintenance() {
			return nil, maintenanceState
		}
		if d.MayClaimPrimary {
			return []action{{Kind: actClaimPrimary, Term: t}}, "claiming the bootstrap primary role"
		}
		return nil, "waiting for a primary"
	}
	if o.Running && !o.InRecovery {
		return []action{{Kind: actStop, Term: t}}, fmt.Sprintf("fencing: Postgres is writable but %q is the primary in term %d", p.Name, t)
	}
	if d.Me.GetMaintenance() {
		// The operator's: nothing is started, stopped, rewound, re-pointed
		// or cloned; the row above still fences a writable Postgres.
		return nil, maintenanceState
	}
	if d.Me.NeedsReclone && !d.Recloned && o.Dir != dirMissing {
		// The primary dropped this node's slot (down past slot_retention,
		// or its WAL lost): the history it needs is gone; clone afresh.
		var acts []action
		if o.Running {
			acts = append(acts, action{Kind: actStop, Term: t})
		}
		return append(acts, action{Kind: actSetAside, Term: t}), fmt.Sprintf("needs a re-clone (%s): setting the data directory aside", d.Me.NeedsRecloneReason)
	}
	start := []action{
		{Kind: actConfigure, Term: t, AsStandby: true, Upstream: p},
		{Kind: actStart, Term: t, AsStandby: true, Upstream: p},
	}
	switch {
	case o.Dir == dirMissing:
		return append([]action{{Kind: actClone, Term: t, Upstream: p}}, start...), fmt.Sprintf("cloning from %q", p.Name)
	case !o.Running && o.StartFailed:
		return nil, "Postgres failed to start: see its log"
	case !o.Running && !o.StandbySignal && d.SkipRewind:
		return start, fmt.Sprintf("following %q after a clean switchover (no rewind needed)", p.Name)
	case !o.Running && !o.StandbySignal && d.ManualRejoin:
		return nil, fmt.Sprintf("a former primary: waiting for `hasidecar node rejoin` to rejoin %q (postgres.manual_rejoin is set)", p.Name)
	case !o.Running && !o.StandbySignal && d.DiskFull:
		return nil, fmt.Sprintf("a former primary: the disk is full, waiting for space before rewinding from %q to rejoin", p.Name)
	case !o.Running && !o.StandbySignal:
		// A former primary (or a standby whose signal file is gone): its
		// history may have diverged, rewind before it follows.
		return append([]action{{Kind: actRewind, Term: t, Upstream: p}}, start...), fmt.Sprintf("rewinding from %q to rejoin as a standby", p.Name)
	case !o.Running:
		return start, fmt.Sprintf("starting as a standby of %q", p.Name)
	case o.Stuck && d.ManualRejoin:
		return nil, fmt.Sprintf("not streaming from %q: waiting for `hasidecar node rejoin` (postgres.manual_rejoin is set)", p.Name)
	case o.Stuck:
		return append([]action{{Kind: actStop, Term: t}, {Kind: actRewind, Term: t, Upstream: p}}, start...), fmt.Sprintf("not streaming from %q: rewinding", p.Name)
	}
	acts := []action{{Kind: actConfigure, Term: t, AsStandby: true, Upstream: p}}
	me := d.Me
	if me.NeedsReclone {
		// Re-cloned (above: a marked node with a data directory that is
		// not fresh sets it aside first): clear the mark, then register.
		acts = append(acts, action{Kind: actClearReclone, Term: t})
	}
	if me.Role != pb.NodeRole_NODE_ROLE_STANDBY || me.UpstreamId != p.Id || !me.Active {
		ev := fsm.EventStandbyFollow
		switch {
		case me.Role == pb.NodeRole_NODE_ROLE_UNSPECIFIED:
			ev = fsm.EventStandbyRegister
		case !me.Active:
			ev = fsm.EventNodeRejoin
		}
		if o.Streaming || ev == fsm.EventStandbyRegister {
			acts = append(acts, action{Kind: actRegisterStandby, Term: t, Upstream: p, EventType: ev})
		}
	}
	return acts, fmt.Sprintf("running as a standby of %q", p.Name)
}
