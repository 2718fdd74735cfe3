package keeper

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/internal/clock"
	"github.com/hasidecar/hasidecar/internal/fakelog"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// fakePG is a model of the local Postgres for the keeper's unit tests: a
// postmaster that runs or not, in recovery or not, a status query that can
// hang, and a guard whose deadline is recorded.
type fakePG struct {
	mu          sync.Mutex
	running     bool
	inRecovery  bool
	statusErr   error // the status query's answer when set (a hung Postgres)
	stops       []pgctl.StopMode
	exited      chan struct{}
	guardOn     bool
	guardArmed  time.Time // the last deadline the guard was told (zero: disarmed)
	guardStarts int
	// the guard's deadline when the postmaster was started, when pg_promote ran
	armedAtStart, armedAtPromote time.Time
	passWrites                   int
	markerTerm                   uint64
	markerLSN                    uint64
	foreign                      int // ForeignPostmaster's answer
	// the data directory: its state (default valid), identifier,
	// standby.signal, pg_controldata state and checkpoint.
	dir           pgctl.DataDirState
	dirSet        bool
	sysID         uint64
	standbySignal bool
	cdState       string
	// controlFile, when set, answers ReadControlFile (under mu).
	// adoptGuard, when set, answers AdoptGuard and lets Adopt take the
	// postmaster over (beforeAdopt runs first); guardStops counts StopGuard calls
	// that stopped a running guard.
	adoptGuard  func(pid int) pgctl.GuardStatus
	beforeAdopt func()
	guardStops  int
	// stopWait, when set, holds every Stop until it is closed.
	stopWait    chan struct{}
	controlFile func() *pgctl.ControlFile
	checkpoint  uint64
	hotStandby  map[string]int64 // pg_controldata's hot-standby settings
	// the primary's replication rows and flush LSN (status query), and
	// the managed settings last written.
	replication  []pgctl.ReplicationRow
	flush        uint64
	settings     map[string]string
	configWrites int               // WriteManagedConfig calls
	loaded       map[string]string // CurrentSetting's answers
	// loadOnReload: a Reload puts the written synchronous_standby_names
	// into loaded (as Postgres does).
	loadOnReload bool
}

func newFakePG() *fakePG { return &fakePG{exited: make(chan struct{})} }

func (p *fakePG) Options() pgctl.Options              { return pgctl.Options{Port: 5432} }
func (p *fakePG) PrepareDirs(context.Context) error   { return nil }
func (p *fakePG) CheckPortFree(context.Context) error { return nil }
func (p *fakePG) ForeignPostmaster() int              { return p.foreign }
func (p *fakePG) InspectDataDir(context.Context) (pgctl.DataDirState, error) {
	if p.dirSet {
		return p.dir, nil
	}
	return pgctl.DataDirValid, nil
}
func (p *fakePG) ControlData(context.Context) (*pgctl.ControlData, error) {
	id := p.sysID
	if id == 0 {
		id = 42
	}
	return &pgctl.ControlData{SystemIdentifier: id, TimelineID: 1, State: p.cdState, CheckpointLSN: p.checkpoint, HotStandby: p.hotStandby}, nil
}
func (p *fakePG) ReadControlFile() (*pgctl.ControlFile, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.controlFile == nil {
		return nil, errors.New("fake: no pg_control")
	}
	return p.controlFile(), nil
}
func (p *fakePG) IsStandbySignal() bool                           { return p.inRecovery || p.standbySignal }
func (p *fakePG) SetStandbySignal(on bool) (bool, error)          { return false, nil }
func (p *fakePG) DiskSpace() (pgctl.DiskSpace, error)             { return pgctl.DiskSpace{}, nil }
func (p *fakePG) InitDB(context.Context, pgctl.InitOptions) error { return nil }
func (p *fakePG) BaseBackup(context.Context, pgctl.Conninfo, string, string) error {
	return errors.New("fake: no clone")
}
func (p *fakePG) Rewind(context.Context, pgctl.Conninfo, string) error {
	return errors.New("fake: no rewind")
}
func (p *fakePG) RemoveDataDir(context.Context) (pgctl.SetAside, error) {
	return pgctl.SetAside{}, nil
}
func (p *fakePG) WriteHBA(context.Context, pgctl.HBAConfig) (bool, error)   { return false, nil }
func (p *fakePG) SetRecovery(context.Context, string, string) (bool, error) { return false, nil }
func (p *fakePG) WriteManagedConfig(_ context.Context, settings map[string]string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := p.settings["synchronous_standby_names"] != settings["synchronous_standby_names"]
	p.settings = settings
	p.configWrites++
	return changed, nil
}

func (p *fakePG) WritePassfile(path string, entries []pgctl.PassEntry) error {
	p.mu.Lock()
	p.passWrites++
	p.mu.Unlock()
	return pgctl.WritePassfile(path, "", entries)
}

func (p *fakePG) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

func (p *fakePG) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

func (p *fakePG) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running, p.exited = true, make(chan struct{})
	p.armedAtStart = p.guardArmed
	return nil
}

func (p *fakePG) Stop(_ context.Context, mode pgctl.StopMode) error {
	p.mu.Lock()
	wait := p.stopWait
	p.mu.Unlock()
	if wait != nil {
		<-wait // a postmaster that takes its time to exit
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stops = append(p.stops, mode)
	if p.running {
		p.running = false
		close(p.exited)
	}
	return nil
}

// crash makes the postmaster exit as if killed.
func (p *fakePG) crash() { _ = p.Stop(context.Background(), pgctl.StopImmediate); p.stops = nil }

func (p *fakePG) Kill() { p.crash() }
func (p *fakePG) Reload(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.loadOnReload {
		if p.loaded == nil {
			p.loaded = map[string]string{}
		}
		p.loaded["synchronous_standby_names"] = p.settings["synchronous_standby_names"]
	}
	return nil
}
func (p *fakePG) Promote(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inRecovery, p.armedAtPromote = false, p.guardArmed
	return nil
}
func (p *fakePG) Checkpoint(context.Context) error {
	return nil
}

func (p *fakePG) Status(context.Context) (*pgctl.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.statusErr != nil {
		return nil, p.statusErr
	}
	flush := p.flush
	if flush == 0 {
		flush = 1000
	}
	return &pgctl.Status{Running: p.running, InRecovery: p.inRecovery, Timeline: 1, SystemIdentifier: 42, CurrentLSN: flush, FlushLSN: flush, Replication: p.replication}, nil
}

func (p *fakePG) CurrentSetting(_ context.Context, name string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loaded[name], nil
}
func (p *fakePG) EnsureRole(context.Context, string, bool, string) error { return nil }
func (p *fakePG) ListSlots(context.Context) ([]pgctl.Slot, error)        { return nil, nil }
func (p *fakePG) EnsureSlot(context.Context, string) (bool, error)       { return false, nil }
func (p *fakePG) DropSlot(context.Context, string) (bool, error)         { return false, nil }

func (p *fakePG) SwitchoverMarker() (uint64, uint64, bool) {
	return p.markerTerm, p.markerLSN, p.markerTerm != 0
}

func (p *fakePG) SetSwitchoverMarker(term, lsn uint64) error {
	p.markerTerm, p.markerLSN = term, lsn
	return nil
}

func (p *fakePG) StartGuard() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.guardOn {
		p.guardOn = true
		p.guardStarts++
	}
	return nil
}

func (p *fakePG) UpdateGuardDeadline(deadline time.Time, _ uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.guardArmed = deadline
	return nil
}

func (p *fakePG) GuardStatus(context.Context) (pgctl.GuardStatus, error) {
	return pgctl.GuardStatus{}, pgctl.ErrNoGuard
}
func (p *fakePG) AdoptGuard(_ context.Context, pid int) (pgctl.GuardStatus, error) {
	p.mu.Lock()
	adopt := p.adoptGuard
	p.mu.Unlock()
	if adopt == nil {
		return pgctl.GuardStatus{}, pgctl.ErrNoGuard
	}
	p.mu.Lock()
	p.guardOn = true
	p.mu.Unlock()
	return adopt(pid), nil
}

// Adopt takes the postmaster pid over when AdoptGuard is set up; it runs
// beforeAdopt first (outside mu: it may run the keeper's other actors).
func (p *fakePG) Adopt(int) error {
	p.mu.Lock()
	before := p.beforeAdopt
	p.mu.Unlock()
	if before != nil {
		before()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.adoptGuard == nil {
		return pgctl.ErrNoGuard
	}
	p.running, p.exited = true, make(chan struct{})
	return nil
}
func (p *fakePG) DetachGuard() {}

func (p *fakePG) StopGuard() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.guardOn {
		p.guardStops++
	}
	p.guardOn, p.guardArmed = false, time.Time{}
}

// fakePeers: nobody answers; every Postgres answers TCP.
type fakePeers struct{}

func (fakePeers) LSNs(_ context.Context, nodes []*pb.Node, _ uint64, _ time.Duration) []*pb.LSNResponse {
	return make([]*pb.LSNResponse, len(nodes))
}
func (fakePeers) EnsureSlot(context.Context, *pb.Node, string, uint64, time.Duration) error {
	return nil
}
func (fakePeers) PostgresAnswers(*pb.Node, time.Duration) bool { return true }

// testConfig is a data node's config named name with the default timings
// (lease 4 s, monitor interval 1 s, restart_timeout 0 unless set).
func testConfig(t interface{ Fatal(...any) }, name string) *config.Config {
	cfg := &config.Config{Name: name, Postgres: &config.PostgresConfig{Port: 5432}}
	cfg.ApplyDefaults()
	if cfg.Timing.Lease.D() == 0 || cfg.Postgres == nil {
		t.Fatal("config defaults: no lease")
	}
	return cfg
}

// newTestKeeper is a keeper on a fake log, Postgres and clock.
func newTestKeeper(t interface{ Fatal(...any) }, cfg *config.Config, clk *clock.Manual, lg *fakelog.Log, pg *fakePG) *Keeper {
	k, err := New(Config{Node: cfg, Logger: hclog.NewNullLogger(), Clock: clk, Started: clk.Now()}, lg, pg, fakePeers{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The test doubles implement the keeper's interfaces.
var (
	_ Log      = (*fakelog.Log)(nil)
	_ Postgres = (*fakePG)(nil)
	_ Peers    = fakePeers{}
)
