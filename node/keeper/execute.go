package keeper

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// execute runs one planned action through pgctl or the log.
func (a *Keeper) execute(ctx context.Context, act action) error {
	if act.Kind.changesState() {
		a.conf = confMemo{} // the files may be rewritten (clone, rewind, initdb...)
	}
	switch act.Kind {
	case actClaimPrimary:
		return a.claimPrimary(ctx)
	case actInitDB:
		a.logger.Info("initialising a new Postgres cluster", "data_dir", a.cfg.Postgres.DataDir)
		if err := a.pg.InitDB(ctx, pgctl.InitOptions{}); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
		a.recordEvent(ctx, fsm.EventClusterCreated, true, act.Term, "initdb in "+a.cfg.Postgres.DataDir)
		return nil
	case actClone:
		return a.clone(ctx, act)
	case actRewind:
		return a.rewind(ctx, act)
	case actConfigure:
		return a.configure(ctx, act)
	case actStart:
		return a.start(ctx, act)
	case actStop:
		a.fence(ctx, a.stateText())
		return nil
	case actAdopt:
		return a.adopt(ctx, act)
	case actPromote:
		return a.promote(ctx, act)
	case actRecordSysID:
		return a.recordSysID(ctx)
	case actRegisterStandby:
		me := a.self()
		if me == nil {
			return errors.New("not registered")
		}
		_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetStandby{SetStandby: &pb.SetStandby{
			NodeId: me.Id, UpstreamId: act.Upstream.Id, Term: act.Term, EventType: act.EventType, SlotName: me.SlotName,
		}}}, 0)
		if err != nil {
			return fmt.Errorf("register as standby of %s: %w", act.Upstream.Name, err)
		}
		a.logger.Info("registered as standby", "upstream", act.Upstream.Name, "event", act.EventType, "term", act.Term)
		return nil
	case actPrimaryDuties:
		return a.primaryDuties(ctx, act.Term)
	case actSetAside:
		if a.pg.Running() {
			return errors.New("postgres is still running")
		}
		me := a.self()
		return a.setDataDirAside(ctx, act.Term, fmt.Sprintf("%q needs a re-clone (%s)", a.cfg.Name, me.GetNeedsRecloneReason()))
	case actClearReclone:
		me := a.self()
		_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetNeedsReclone{SetNeedsReclone: &pb.SetNeedsReclone{
			Term: act.Term, NodeId: me.GetId(), NeedsReclone: false}}}, 0)
		if err != nil {
			return fmt.Errorf("clear the re-clone mark: %w", err)
		}
		return nil
	case actSwitchoverStop:
		return a.switchoverStop(ctx, act.Term)
	case actReportShutdown:
		return a.reportShutdown(ctx, act.Term)
	}
	return fmt.Errorf("unknown action %v", act.Kind)
}

func (a *Keeper) claimPrimary(ctx context.Context) error {
	me := a.self()
	if me == nil {
		return errors.New("not registered")
	}
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_RegisterPrimary{RegisterPrimary: &pb.RegisterPrimary{
		NodeId: me.Id, LeaseMs: a.leaseLength(a.log.State()).Milliseconds(),
	}}}, 0)
	if err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			a.logger.Info("another node is the bootstrap primary", "reason", err)
			return nil
		}
		return fmt.Errorf("claim the primary role: %w", err)
	}
	a.logger.Info("registered as the bootstrap primary", "term", 1)
	a.renewNow(ctx)
	return nil
}

// managedSettings: what every instance of this cluster runs with. In
// order, later winning: pgctl's managed settings, the cluster's
// postgresql.parameters, this node's postgres.parameters, then what the
// keeper sets itself. Parameters naming a config.ManagedParameters setting
// are dropped (the leader and the node file's validation refuse them).
func (a *Keeper) managedSettings() map[string]string { return a.settingsFor(a.log.State()) }

func (a *Keeper) settingsFor(st *pb.ClusterState) map[string]string {
	pc := a.cfg.Postgres
	s := pgctl.ManagedSettings(a.pg.Options())
	for _, params := range []map[string]string{st.GetSettings().GetPostgresParameters(), a.live.Load().Postgres.Parameters} {
		for k, v := range params {
			if _, managed := config.ManagedParameters[k]; !managed {
				s[k] = v
			}
		}
	}
	s["wal_keep_size"] = fmt.Sprintf("%dkB", uint64(pc.WALKeepSize)/1024)
	s["max_slot_wal_keep_size"] = "-1" // 0: no cap
	if pc.MaxSlotWALKeepSize > 0 {
		s["max_slot_wal_keep_size"] = fmt.Sprintf("%dMB", max(uint64(pc.MaxSlotWALKeepSize)>>20, 1))
	}
	s["cluster_name"] = a.cfg.Name
	s["synchronous_standby_names"] = a.syncSetting(st)
	return s
}

func (a *Keeper) hbaConfig() pgctl.HBAConfig {
	pc := a.cfg.Postgres
	return pgctl.HBAConfig{
		AuthMethod:      pc.AuthMethod,
		AllowedNetworks: pc.AllowedNetworks,
		ReplicationUser: pc.ReplicationUser,
		Superuser:       pc.Superuser,
		IdentUsers:      identUsers(pc.OSUser),
		// The node's own lines first: pg_hba.conf takes the first match.
		Extra: append(slices.Clone(a.live.Load().Postgres.HBA), a.log.State().Settings.GetPostgresHba()...),
	}
}

// configure writes the managed settings, pg_hba and the recovery settings
// for the role, and reloads a running Postgres when anything changed.
func (a *Keeper) configure(ctx context.Context, act action) error {
	settings, hba := a.managedSettings(), a.hbaConfig()
	conninfo, slot := "", ""
	if act.AsStandby && act.Upstream != nil {
		conninfo = a.upstreamConninfo(act.Upstream, false).String()
		if me := a.self(); me != nil {
			slot = me.SlotName
		}
	}
	running := a.pg.Running()
	if act.AsStandby && !running {
		settings = a.raiseToControlData(ctx, settings)
	}
	key := configureKey(settings, hba, conninfo, slot, act.AsStandby, running)
	if a.conf.fresh(key, a.clk.Now()) {
		return nil // written from the same inputs a moment ago (confmemo.go)
	}
	c1, err := a.pg.WriteManagedConfig(ctx, settings)
	if err != nil {
		return err
	}
	c2, err := a.pg.WriteHBA(ctx, hba)
	if err != nil {
		return err
	}
	c3, err := a.pg.SetRecovery(ctx, conninfo, slot)
	if err != nil {
		return err
	}
	if !running || !act.AsStandby || a.standbyMode.Load() {
		// The signal file only matters at start; never remove it under a
		// running standby (a promotion does that itself).
		if !running {
			if _, err := a.pg.SetStandbySignal(act.AsStandby); err != nil {
				return err
			}
		}
	}
	if running && (c1 || c2 || c3) {
		if err := a.pg.Reload(ctx); err != nil {
			return fmt.Errorf("reload after a settings change: %w", err)
		}
		a.logger.Info("settings changed: reloaded", "config", c1, "hba", c2, "recovery", c3)
		if c3 && act.Upstream != nil {
			if me := a.self(); me != nil && me.Role == pb.NodeRole_NODE_ROLE_STANDBY && me.Active {
				a.recordEvent(ctx, fsm.EventStandbyFollow, true, act.Term, fmt.Sprintf("%q now follows %q", a.cfg.Name, act.Upstream.Name))
			}
		}
	}
	a.conf = confMemo{key: key, at: a.clk.Now()}
	return nil
}

// raiseToControlData is settings for the start of a standby: a hot-standby
// setting (config.HotStandbyParameters) below the value its pg_control
// holds — the primary's, from the last XLOG_PARAMETER_CHANGE it replayed —
// is raised to it. Postgres refuses to start a standby with a lower one
// ("recovery aborted because of insufficient parameter settings"), and it
// could then never replay the record that lowers it: a standby that
// restarts after `config set` lowered max_connections but before the
// primary's restart would stay down. Patroni does the same. Once it runs,
// the next configure writes the configured value again, which shows as
// pending_restart until a restart after the primary's (`hasidecar restart
// --pending` orders them).
func (a *Keeper) raiseToControlData(ctx context.Context, settings map[string]string) map[string]string {
	cd, err := a.pg.ControlData(ctx)
	if err != nil {
		a.logger.Debug("pg_controldata before a standby start", "error", err)
		return settings
	}
	var raised []string
	for _, name := range config.HotStandbyParameters {
		ctl, ok := cd.HotStandby[name]
		if !ok {
			continue
		}
		cur, set := settings[name]
		want := pgctl.HotStandbyDefaults[name]
		if set {
			v, err := strconv.ParseInt(strings.TrimSpace(cur), 10, 64)
			if err != nil {
				continue // Postgres will say what is wrong with it
			}
			want = v
		}
		if ctl <= want {
			continue
		}
		if raised == nil {
			settings = maps.Clone(settings)
		}
		settings[name] = strconv.FormatInt(ctl, 10)
		raised = append(raised, fmt.Sprintf("%s %d → %d", name, want, ctl))
	}
	if len(raised) > 0 {
		a.logger.Warn("starting the standby with settings raised to what its primary last ran (pg_control); they show as pending_restart until a restart after the primary's",
			"raised", strings.Join(raised, ", "))
	}
	return settings
}

func (a *Keeper) start(ctx context.Context, act action) error {
	if !act.AsStandby && !a.leaseValid() {
		return errors.New("refusing to start as primary without a valid lease")
	}
	if act.AsStandby && !a.pg.IsStandbySignal() {
		return errors.New("refusing to start a standby without standby.signal")
	}
	a.standbyMode.Store(act.AsStandby)
	if !act.AsStandby {
		// The guard first, armed with the lease deadline, then the
		// postmaster: a sidecar frozen right after the start must not
		// leave a writable Postgres that nothing fences.
		a.startingPrimary.Store(true)
		defer a.startingPrimary.Store(false)
		if err := a.armGuard(); err != nil {
			return fmt.Errorf("start postgres as primary: %w", err)
		}
	}
	a.crashMu.Lock()
	crashed := a.crashedAt
	a.crashedAt = time.Time{}
	a.crashMu.Unlock()
	what := "primary"
	if act.AsStandby {
		what = "standby"
	}
	a.logger.Info("starting postgres", "as", what, "term", act.Term)
	if err := a.pg.Start(ctx); err != nil {
		a.lastStartErr = a.clk.Now()
		a.crashMu.Lock()
		if a.crashedAt.IsZero() {
			a.crashedAt = crashed
			if a.crashedAt.IsZero() {
				a.crashedAt = a.clk.Now()
			}
		}
		a.crashMu.Unlock()
		return fmt.Errorf("start postgres as %s: %w", what, err)
	}
	a.lastStartErr = time.Time{}
	a.healthyAt.Store(a.clk.Now().UnixNano()) // Start returns once it accepts connections
	if !crashed.IsZero() {
		down := a.clk.Now().Sub(crashed).Round(10 * time.Millisecond)
		a.logger.Warn("postgres restarted in place", "as", what, "down", down)
		details := fmt.Sprintf("%q restarted Postgres in place as %s after it stopped without the sidecar asking (down %s)", a.cfg.Name, what, down)
		a.goAside(func(ctx context.Context) { a.recordEvent(ctx, fsm.EventPostgresRestart, true, act.Term, details) })
	}
	return nil
}

// promote turns this standby into the primary of term act.Term, after
// checking once more that the FSM still says so and the lease is held.
func (a *Keeper) promote(ctx context.Context, act action) error {
	st := a.log.State()
	me, holds := a.holdsLease(st)
	if !holds || st.Term != act.Term {
		return fmt.Errorf("promotion in term %d is stale (cluster term %d)", act.Term, st.Term)
	}
	if !a.leaseValid() {
		// The decision's own anchor first (no round trip); else renew.
		if !a.anchorLease(st) || !a.leaseValid() {
			a.renewNow(ctx)
		}
		if !a.leaseValid() {
			return errors.New("no valid lease yet: promotion postponed")
		}
	}
	// synchronous_standby_names must already name the set Promote kept
	// (S_p ⊆ S_f from the first writable moment, node/keeper/sync.go): configure
	// wrote it just before; a standby ignores it, pg_promote puts it into
	// effect.
	want := a.syncSetting(st)
	if err := a.waitSyncSetting(ctx, want); err != nil {
		return fmt.Errorf("promotion postponed: %w", err)
	}
	a.logger.Info("promoting", "node", me.Name, "term", st.Term, "decision_index", st.TermIndex, "synchronous_standby_names", want)
	a.standbyMode.Store(false) // from here on the watchdog guards it
	// Armed before pg_promote: writable only with an armed guard.
	if err := a.armGuard(); err != nil {
		a.standbyMode.Store(true)
		return fmt.Errorf("promotion postponed: %w", err)
	}
	start := a.clk.Now()
	if err := a.pg.Promote(ctx); err != nil {
		a.recordEvent(ctx, fsm.EventStandbyPromote, false, act.Term, fmt.Sprintf("promotion of %q failed: %v", me.Name, err))
		return fmt.Errorf("promote %s: %w", me.Name, err)
	}
	if a.hooks.Promoted != nil {
		a.hooks.Promoted()
	}
	// Observe at once: the renewal below must carry the new timeline, or
	// the leader, until the next observation, would refuse the standbys
	// that already follow this node onto it as on the wrong timeline (a
	// failure right after the promotion then found no candidate).
	tli := a.observe(ctx).Timeline
	a.logger.Info("promoted", "node", me.Name, "term", act.Term, "timeline", tli, "took", a.clk.Now().Sub(start))
	a.renewNow(ctx)
	a.goAside(func(ctx context.Context) {
		// A checkpoint right after promotion lets a later pg_rewind from
		// this node see the new timeline in pg_control.
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := a.pg.Checkpoint(cctx); err != nil {
			a.logger.Debug("checkpoint after promotion", "error", err)
		}
	})
	a.recordEvent(ctx, fsm.EventStandbyPromote, true, act.Term, fmt.Sprintf("%q promoted in term %d (decision at log index %d), now on timeline %d", me.Name, act.Term, st.TermIndex, tli))
	return nil
}

// waitSyncSetting waits (up to 5 s) until the running Postgres has loaded
// synchronous_standby_names = want. A server session sees a reloaded value
// only once the postmaster re-read the file and signalled every child, the
// checkpointer (which tells backends whether to wait at all) included.
func (a *Keeper) waitSyncSetting(ctx context.Context, want string) error {
	// The 5 s are on the Clock (a step-driven keeper's manual clock moves
	// with each Sleep); the context bounds the real query too.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	until := a.clk.Now().Add(5 * time.Second)
	var got string
	for {
		var err error
		got, err = a.pg.CurrentSetting(wctx, "synchronous_standby_names")
		if err == nil && got == want {
			return nil
		}
		if wctx.Err() != nil || !a.clk.Now().Before(until) || a.clk.Sleep(wctx, 50*time.Millisecond) != nil {
			if err != nil {
				return fmt.Errorf("read synchronous_standby_names: %w", err)
			}
			return fmt.Errorf("postgres runs with synchronous_standby_names %q, not %q yet", got, want)
		}
	}
}

func (a *Keeper) recordSysID(ctx context.Context) error {
	o := a.observed()
	if o.SystemIdentifier == 0 {
		return nil
	}
	me := a.self()
	_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetSystemIdentifier{SetSystemIdentifier: &pb.SetSystemIdentifier{SystemIdentifier: o.SystemIdentifier, NodeId: me.GetId()}}}, 0)
	if err != nil {
		return fmt.Errorf("record the system identifier: %w", err)
	}
	return nil
}

// primaryDuties: the replication role, and exactly one physical slot per
// registered data node (slots of removed nodes are dropped).
func (a *Keeper) primaryDuties(ctx context.Context, term uint64) error {
	if err := a.EnsureReplicationRole(ctx); err != nil {
		return err
	}
	st := a.log.State()
	// keep: every data node's slot; create: those of nodes not marked
	// needs_reclone (a marked node asks for its slot when it clones).
	keep, create := map[string]bool{}, map[string]bool{}
	for _, n := range st.Nodes {
		if n.Kind == pb.NodeKind_NODE_KIND_DATA && n.Name != a.cfg.Name && n.SlotName != "" {
			keep[n.SlotName] = true
			create[n.SlotName] = !n.NeedsReclone
		}
	}
	slots, err := a.pg.ListSlots(ctx)
	if err != nil {
		return fmt.Errorf("list replication slots: %w", err)
	}
	have := map[string]bool{}
	for _, s := range slots {
		if strings.HasPrefix(s.Name, "hasidecar_") && !keep[s.Name] {
			if _, err := a.pg.DropSlot(ctx, s.Name); err != nil {
				return fmt.Errorf("drop slot %s of a removed node: %w", s.Name, err)
			}
			a.logger.Info("dropped the slot of a removed node", "slot", s.Name)
			continue
		}
		dropped, err := a.retainSlot(ctx, st, term, s)
		if err != nil {
			return err
		}
		have[s.Name] = !dropped
	}
	// In name order: the slots are created the same way on every run.
	for _, name := range slices.Sorted(maps.Keys(create)) {
		if create[name] && !have[name] {
			if _, err := a.pg.EnsureSlot(ctx, name); err != nil {
				return fmt.Errorf("create slot %s: %w", name, err)
			}
			a.logger.Info("created replication slot", "slot", name)
		}
	}
	return a.manageSync(ctx, term)
}

// retainSlot applies slot_retention to one standby's slot: a slot whose WAL
// Postgres invalidated (past max_slot_wal_keep_size), or that has been
// inactive longer than the cluster's slot_retention (its standby is down),
// is dropped, after its node was marked needs_reclone (an event records
// it): that node clones afresh when it returns, and the primary's pg_wal
// stops growing for it. The inactivity is timed on this primary's clock
// from when it first saw the slot inactive (a new primary starts afresh).
func (a *Keeper) retainSlot(ctx context.Context, st *pb.ClusterState, term uint64, s pgctl.Slot) (dropped bool, err error) {
	var n *pb.Node
	for _, x := range st.Nodes {
		if x.SlotName == s.Name {
			n = x
		}
	}
	if n == nil {
		return false, nil
	}
	if a.slotIdle == nil {
		a.slotIdle = map[string]time.Time{}
	}
	now := a.clk.Now()
	if s.Active {
		delete(a.slotIdle, s.Name)
		return false, nil
	}
	since, ok := a.slotIdle[s.Name]
	if !ok {
		since, a.slotIdle[s.Name] = now, now
	}
	retention := time.Duration(st.Settings.GetSlotRetentionMs()) * time.Millisecond
	var reason string
	switch {
	case s.WalStatus == "lost":
		reason = fmt.Sprintf("its slot lost the WAL it needs (more than max_slot_wal_keep_size %s)", a.cfg.Postgres.MaxSlotWALKeepSize)
	case retention > 0 && now.Sub(since) >= retention:
		reason = fmt.Sprintf("its slot was inactive for %s, past slot_retention %s", now.Sub(since).Round(time.Second), retention)
	default:
		return false, nil
	}
	if !n.NeedsReclone {
		me := a.self()
		_, err := a.log.Propose(ctx, &pb.Command{Cmd: &pb.Command_SetNeedsReclone{SetNeedsReclone: &pb.SetNeedsReclone{
			Term: term, PrimaryId: me.GetId(), NodeId: n.Id, NeedsReclone: true, Reason: reason + "; its slot is dropped"}}}, 0)
		if err != nil {
			return false, fmt.Errorf("mark %s as needing a re-clone: %w", n.Name, err)
		}
	}
	if _, err := a.pg.DropSlot(ctx, s.Name); err != nil {
		return false, fmt.Errorf("drop slot %s of %s: %w", s.Name, n.Name, err)
	}
	delete(a.slotIdle, s.Name)
	a.logger.Warn("dropped a standby's slot: it needs a re-clone", "node", n.Name, "slot", s.Name, "reason", reason)
	return true, nil
}

// EnsureReplicationRole creates (or updates) the replication role once per
// process; the EnsureSlot RPC calls it too, so a standby cloning right after
// bootstrap never finds the role missing.
func (a *Keeper) EnsureReplicationRole(ctx context.Context) error {
	a.roleMu.Lock()
	defer a.roleMu.Unlock()
	if a.roleReady {
		return nil
	}
	pc := a.cfg.Postgres
	pw := ""
	if pc.ReplicationPasswordFile != "" {
		var err error
		if pw, err = readSecret(pc.ReplicationPasswordFile); err != nil {
			return err
		}
	}
	if err := a.pg.EnsureRole(ctx, pc.ReplicationUser, true, pw); err != nil {
		return fmt.Errorf("replication role %s: %w", pc.ReplicationUser, err)
	}
	// pg_rewind logs in as the superuser over TCP: give it the password
	// from its file (the role exists since initdb).
	if pc.SuperuserPasswordFile != "" {
		spw, err := readSecret(pc.SuperuserPasswordFile)
		if err != nil {
			return err
		}
		if err := a.pg.EnsureRole(ctx, pc.Superuser, false, spw); err != nil {
			return fmt.Errorf("superuser password for %s: %w", pc.Superuser, err)
		}
	}
	a.roleReady = true
	return nil
}

// clone copies the primary with pg_basebackup through this node's slot,
// which the primary's sidecar creates first.
func (a *Keeper) clone(ctx context.Context, act action) error {
	p := act.Upstream
	me := a.self()
	if err := a.askForSlot(ctx, p, me.SlotName, act.Term); err != nil {
		return fmt.Errorf("clone from %s: %w", p.Name, err)
	}
	a.logger.Info("cloning from the primary", "primary", p.Name, "slot", me.SlotName)
	start := a.clk.Now()
	if err := a.pg.BaseBackup(ctx, a.upstreamConninfo(p, false), me.SlotName, a.passfile); err != nil {
		return fmt.Errorf("clone from %s: %w", p.Name, err)
	}
	a.logger.Info("clone finished", "primary", p.Name, "took", a.clk.Now().Sub(start).Round(time.Millisecond))
	if me.GetNeedsReclone() {
		a.recloned.Store(true)
	}
	return nil
}

func (a *Keeper) askForSlot(ctx context.Context, p *pb.Node, slot string, term uint64) error {
	return a.peers.EnsureSlot(ctx, p, slot, term, 10*time.Second)
}

// rewind makes a former primary (or a diverged standby) a copy of the
// primary's history with pg_rewind; when that cannot work, the data
// directory is set aside (renamed, never deleted) and the next round clones.
func (a *Keeper) rewind(ctx context.Context, act action) error {
	p := act.Upstream
	if a.pg.Running() {
		return errors.New("postgres is still running")
	}
	a.logger.Info("rewinding from the primary", "primary", p.Name, "term", act.Term)
	err := a.pg.Rewind(ctx, a.upstreamConninfo(p, true), a.passfile)
	if err == nil {
		a.recordEvent(ctx, fsm.EventNodeRewind, true, act.Term, fmt.Sprintf("%q rewound from %q", a.cfg.Name, p.Name))
		return nil
	}
	if errors.Is(err, pgctl.ErrRewindImpossible) {
		a.logger.Warn("pg_rewind cannot work: setting the data directory aside and cloning afresh", "error", err)
		if rerr := a.setDataDirAside(ctx, act.Term, "pg_rewind from "+p.Name+" cannot work"); rerr != nil {
			return fmt.Errorf("set the data directory aside after a failed rewind: %w", rerr)
		}
		a.recordEvent(ctx, fsm.EventNodeRewind, false, act.Term, fmt.Sprintf("pg_rewind from %q impossible (%v): data directory set aside, re-cloning", p.Name, err))
		return nil
	}
	return fmt.Errorf("rewind from %s: %w", p.Name, err)
}

// setDataDirAside moves the data directory aside for a re-clone (the older
// set-aside copy, if any, is deleted: at most one is kept) and records it.
func (a *Keeper) setDataDirAside(ctx context.Context, term uint64, why string) error {
	sa, err := a.pg.RemoveDataDir(ctx)
	if err != nil {
		return err
	}
	if sa.Path == "" {
		return nil
	}
	details := fmt.Sprintf("%s: %s moved aside to %s", why, a.cfg.Postgres.DataDir, sa.Path)
	if len(sa.Removed) > 0 {
		details += "; older copies deleted: " + strings.Join(sa.Removed, ", ")
	}
	a.recordEvent(ctx, fsm.EventDataDirSetAside, true, term, details)
	return nil
}

// identUsers are the OS users that may connect over the local socket as the
// database superuser (the sidecar's own user, and the Postgres OS user).
func identUsers(osUser string) []string {
	users := []string{osUser}
	if u := currentUser(); u != "" && u != osUser {
		users = append(users, u)
	}
	return users
}

// adoptGuarded attaches to the guard, then takes the postmaster, with the
// watchdog's guard upkeep held off in between (Keeper.guardMu).
func (a *Keeper) adoptGuarded(ctx context.Context, act action) (pgctl.GuardStatus, error) {
	a.guardMu.Lock()
	defer a.guardMu.Unlock()
	gs, err := a.pg.AdoptGuard(ctx, act.PID)
	if err != nil {
		return gs, err
	}
	a.standbyMode.Store(act.AsStandby || !gs.Armed)
	return gs, a.pg.Adopt(act.PID)
}

// adopt takes over the postmaster and the guard the previous sidecar on
// this host left running (planAdopt decided it may): the guard's
// connection first, so that the postmaster is never this sidecar's without
// its guard, then the postmaster. With InheritLease the guard's deadline,
// granted in this term to this node, becomes the local lease deadline (the
// lease keeper renews it next); without it the local lease stays as it is
// and the watchdog or the next action fences.
func (a *Keeper) adopt(ctx context.Context, act action) error {
	gs, err := a.adoptGuarded(ctx, act)
	if err != nil {
		return fmt.Errorf("adopt postmaster %d: %w", act.PID, err)
	}
	inherit := act.InheritLease && gs.Armed && gs.Term == act.Term && gs.Left() > 0
	if inherit {
		dl := a.clk.Now().Add(gs.Left())
		a.lease.mu.Lock()
		if a.lease.term != act.Term || a.lease.deadline.Before(dl) {
			a.lease.term, a.lease.deadline = act.Term, dl
		}
		if a.lease.last.Before(dl) {
			a.lease.last = dl
		}
		a.lease.mu.Unlock()
	}
	if gs.Armed {
		a.logger.Info("adopted the postmaster the previous sidecar left running", "pid", act.PID, "standby", act.AsStandby, "lease_inherited", inherit, "deadline_in", gs.Left().Round(time.Millisecond))
	} else {
		a.logger.Info("adopted the postmaster the previous sidecar left running", "pid", act.PID, "standby", act.AsStandby, "lease_inherited", inherit)
	}
	a.goAside(func(ctx context.Context) {
		a.recordEvent(ctx, fsm.EventPostgresAdopt, true, act.Term, fmt.Sprintf("postmaster pid %d (standby %t, lease inherited %t)", act.PID, act.AsStandby, inherit))
	})
	return nil
}
