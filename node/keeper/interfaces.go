package keeper

import (
	"context"
	"time"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// The keeper's view of the world: everything it reads or changes goes
// through these interfaces (node/ wires Raft, pgctl and gRPC behind them; a
// simulator or a test wires models). Every method is a synchronous call;
// none is expected to call back into the keeper.

// Clock is the keeper's only time source (internal/clock).
type Clock = clock.Clock

// Log is the replicated log as this node sees it.
type Log interface {
	// State is the latest applied cluster state; the caller must not modify it.
	State() *pb.ClusterState
	// Changed returns a channel closed at the next apply (used by Run only).
	Changed() <-chan struct{}
	// Propose commits cmd through the Raft leader, waiting at most timeout (0: until ctx ends); a rejection by the FSM is an *fsm.Error.
	Propose(ctx context.Context, cmd *pb.Command, timeout time.Duration) (fsm.Result, error)
	// WaitCaughtUp returns once this node applied what the leader had committed when asked (Run calls it before the first pass).
	WaitCaughtUp(ctx context.Context) error
}

// Postgres is the local Postgres instance: the pgctl calls the keeper
// makes, plus the guard process (the lease gate and watchdog beside the
// postmaster: pgctl/guard.go, pgctl/gate.go).
type Postgres interface {
	// Options are the instance's fixed settings (port, socket dir, superuser...).
	Options() pgctl.Options
	// PrepareDirs creates or checks the data, socket and log directories.
	PrepareDirs(ctx context.Context) error
	// CheckPortFree reports an error while something listens on the Postgres port.
	CheckPortFree(ctx context.Context) error
	// ForeignPostmaster is the pid of a live postmaster on the data directory that this process did not start (0: none).
	ForeignPostmaster() int
	// InspectDataDir says whether the data directory is missing/empty, valid, or foreign.
	InspectDataDir(ctx context.Context) (pgctl.DataDirState, error)
	// ControlData is pg_controldata of the data directory (Postgres down).
	ControlData(ctx context.Context) (*pgctl.ControlData, error)
	// ReadControlFile reads pg_control itself (no process; also while Postgres shuts down).
	ReadControlFile() (*pgctl.ControlFile, error)
	// IsStandbySignal reports whether standby.signal exists.
	IsStandbySignal() bool
	// SetStandbySignal creates or removes standby.signal; changed says whether it did.
	SetStandbySignal(on bool) (changed bool, err error)
	// DiskSpace measures free and total space of the data directory's (and pg_wal's) filesystem.
	DiskSpace() (pgctl.DiskSpace, error)
	// InitDB creates a new cluster in the (empty) data directory.
	InitDB(ctx context.Context, o pgctl.InitOptions) error
	// BaseBackup clones source into the data directory through slot.
	BaseBackup(ctx context.Context, source pgctl.Conninfo, slot, passfile string) error
	// Rewind runs pg_rewind from source (pgctl.ErrRewindImpossible, pgctl.ErrSameTimeline).
	Rewind(ctx context.Context, source pgctl.Conninfo, passfile string) error
	// RemoveDataDir moves the data directory aside (keeping at most one older copy).
	RemoveDataDir(ctx context.Context) (pgctl.SetAside, error)
	// WriteManagedConfig writes the managed settings; changed says whether the file changed.
	WriteManagedConfig(ctx context.Context, settings map[string]string) (changed bool, err error)
	// WriteHBA writes pg_hba.conf; changed says whether it changed.
	WriteHBA(ctx context.Context, h pgctl.HBAConfig) (changed bool, err error)
	// SetRecovery writes primary_conninfo and primary_slot_name; changed says whether they changed.
	SetRecovery(ctx context.Context, primaryConninfo, slotName string) (changed bool, err error)
	// WritePassfile writes the libpq password file at path.
	WritePassfile(path string, entries []pgctl.PassEntry) error
	// Running reports whether the postmaster this process started runs.
	Running() bool
	// Exited is closed when the running postmaster exits (select on it only while Running).
	Exited() <-chan struct{}
	// Start starts Postgres and returns once it accepts connections.
	Start(ctx context.Context) error
	// Stop stops Postgres in mode (fast, immediate) and waits for it.
	Stop(ctx context.Context, mode pgctl.StopMode) error
	// Kill kills the Postgres process tree.
	Kill()
	// Reload makes the running Postgres re-read its configuration.
	Reload(ctx context.Context) error
	// Promote runs pg_promote and waits until Postgres leaves recovery.
	Promote(ctx context.Context) error
	// Checkpoint runs CHECKPOINT.
	Checkpoint(ctx context.Context) error
	// Status is the status query: role, LSNs, timeline, replication rows.
	Status(ctx context.Context) (*pgctl.Status, error)
	// CurrentSetting is current_setting(name) as a session of the sidecar sees it (after a reload has reached it).
	CurrentSetting(ctx context.Context, name string) (string, error)
	// EnsureRole creates or updates a login role (replication or not) with password.
	EnsureRole(ctx context.Context, name string, replication bool, password string) error
	// ListSlots lists the physical replication slots.
	ListSlots(ctx context.Context) ([]pgctl.Slot, error)
	// EnsureSlot creates a physical replication slot unless it exists.
	EnsureSlot(ctx context.Context, name string) (created bool, err error)
	// DropSlot drops a replication slot if it exists.
	DropSlot(ctx context.Context, name string) (dropped bool, err error)
	// SwitchoverMarker reads what this node noted when it stopped for a switchover (ok false: none).
	SwitchoverMarker() (term, checkpointLSN uint64, ok bool)
	// SetSwitchoverMarker notes the term and shutdown checkpoint of a switchover stop.
	SetSwitchoverMarker(term, checkpointLSN uint64) error
	// StartGuard makes sure a guard process watches the running postmaster (a no-op when one does).
	StartGuard() error
	// UpdateGuardDeadline arms the guard to kill Postgres at deadline (Clock time), granted in the lease's term; zero disarms it.
	UpdateGuardDeadline(deadline time.Time, term uint64) error
	// StopGuard disarms and closes the guard (no postmaster runs).
	StopGuard()
	// GuardStatus asks the guard a previous sidecar left running what it guards (pgctl.ErrNoGuard: none answers).
	GuardStatus(ctx context.Context) (pgctl.GuardStatus, error)
	// AdoptGuard attaches to that guard, which must guard the postmaster pid, as this sidecar's guard.
	AdoptGuard(ctx context.Context, pid int) (pgctl.GuardStatus, error)
	// Adopt takes over the postmaster pid a previous sidecar left running (Running, Stop, Exited... then apply to it).
	Adopt(pid int) error
	// DetachGuard leaves the guard running with its last deadline: this sidecar exits and leaves Postgres to the next one.
	DetachGuard()
}

// Peers are the other sidecars, as the keeper asks them.
type Peers interface {
	// LSNs asks each node's sidecar, in parallel, for its fresh WAL positions; nil for one that did not answer within timeout.
	LSNs(ctx context.Context, nodes []*pb.Node, term uint64, timeout time.Duration) []*pb.LSNResponse
	// EnsureSlot asks the primary's sidecar to create this node's replication slot.
	EnsureSlot(ctx context.Context, primary *pb.Node, slot string, term uint64, timeout time.Duration) error
	// PostgresAnswers reports whether node's Postgres accepts TCP connections within timeout.
	PostgresAnswers(node *pb.Node, timeout time.Duration) bool
}

// Hooks are optional callbacks for metrics (nil: none).
type Hooks struct {
	Fenced   func() // Postgres was fenced (stopped for want of a lease)
	Promoted func() // Postgres was promoted
}
