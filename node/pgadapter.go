package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/pgctl"
)

// pgPostgres is the keeper's Postgres (node/keeper.Postgres): the pgctl
// controller of the local instance, the guard process beside it
// (guard.go), the switchover marker and the passfile on disk.
type pgPostgres struct {
	*pgctl.Controller
	ctl    *pgctl.Controller
	cfg    *config.Config
	logger hclog.Logger
	// guard: the guard process (StartGuard, UpdateGuardDeadline and
	// StopGuard, from the keeper's watchdog and its start and promotion).
	guardMu sync.Mutex
	guard   *pgGuard
}

func newPGPostgres(cfg *config.Config, logger hclog.Logger) (*pgPostgres, error) {
	pc := cfg.Postgres
	ctl, err := pgctl.New(pgctl.Options{
		BinDir:          pc.BinDir,
		DataDir:         pc.DataDir,
		Port:            pc.Port,
		ListenAddresses: pc.ListenAddresses,
		SocketDir:       pc.SocketDir,
		OSUser:          pc.OSUser,
		Superuser:       pc.Superuser,
		LogFile:         pc.LogFile,
		Logger:          logger.Named("pgctl"),
		StopTimeout:     pc.StopTimeout.D(),
		StartTimeout:    pc.StartTimeout.D(),
		SurviveExit:     !pc.StopOnExit,
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &pgPostgres{Controller: ctl, ctl: ctl, cfg: cfg, logger: logger.Named("postgres")}, nil
}

// WritePassfile writes the libpq password file, owned by postgres.os_user.
func (p *pgPostgres) WritePassfile(path string, entries []pgctl.PassEntry) error {
	return pgctl.WritePassfile(path, p.cfg.Postgres.OSUser, entries)
}

// switchoverMarker is what the old primary notes on disk when it stopped for
// a switchover: with it, it knows later that it may follow without rewind.
type switchoverMarker struct {
	Term          uint64 `json:"term"`
	CheckpointLSN uint64 `json:"checkpoint_lsn"`
}

func (p *pgPostgres) markerPath() string { return filepath.Join(p.cfg.StateDir, "switchover.json") }

// SwitchoverMarker reads the marker (ok false: none, or unreadable).
func (p *pgPostgres) SwitchoverMarker() (term, checkpointLSN uint64, ok bool) {
	var m switchoverMarker
	b, err := os.ReadFile(p.markerPath())
	if err != nil || json.Unmarshal(b, &m) != nil {
		return 0, 0, false
	}
	return m.Term, m.CheckpointLSN, true
}

// SetSwitchoverMarker writes the marker.
func (p *pgPostgres) SetSwitchoverMarker(term, checkpointLSN uint64) error {
	b, _ := json.Marshal(switchoverMarker{Term: term, CheckpointLSN: checkpointLSN})
	if err := os.WriteFile(p.markerPath(), b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", p.markerPath(), err)
	}
	return nil
}
