package sim

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/node/leader"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// leaderActor runs the product's leader (node/leader) on a sim host: one
// leader.Leader per Raft leadership (made once this node leads and applied
// its term's first entry, as node/ does after a Barrier), Decide driven at
// NextWake and on every apply, each pass in a coroutine so that its
// blocking calls (Log.Propose, Peers.LSNs) wait in virtual time. The
// adapters below are the sim's Log, Peers, Raft and Clock.
type leaderActor struct {
	s       *Sim
	h       *Host
	l       *leader.Leader
	term    uint64 // the Raft term of l's leadership
	cancel  context.CancelFunc
	ctx     context.Context
	cur     *coro // the coroutine of the passes
	idle    bool  // it waits for the next pass
	again   bool  // a change arrived while deciding
	wakeAt  int64
	adapter *simLeaderIO
}

func (a *leaderActor) start() { a.loop() }

func (a *leaderActor) loop() {
	a.step()
	a.h.clock.After(a.h.sidecar, 100*ms, a.loop)
}

// step: called on every apply and leadership change, and at wake-ups.
func (a *leaderActor) step() {
	r := a.h.raft
	if !r.IsLeader() || !a.h.sidecarUp {
		if a.l != nil {
			a.cancel() // leadership lost: the in-flight pass sees ctx end
			a.l, a.adapter = nil, nil
			a.s.wakeCo(a.cur, a.h.sidecar)
		}
		return
	}
	if a.l == nil || a.term != r.term {
		a.term = r.term
		a.ctx, a.cancel = context.WithCancel(context.Background())
		a.adapter = &simLeaderIO{s: a.s, h: a.h}
		drift := a.s.cfg.driftPercent
		if a.s.cfg.plant == plantNoDriftMargin {
			drift = 0 // planted: the leader is configured without the drift margin
		}
		var lg hclog.Logger
		if a.s.cfg.trace {
			lg = hclog.New(&hclog.LoggerOptions{Name: "leader " + a.h.name, Output: traceWriter{a.s}, DisableTime: true, Level: hclog.Info})
		}
		a.l = leader.New(leader.Config{Name: a.h.name, Lease: time.Duration(leaseDur), DriftMarginPercent: drift,
			MonitorInterval: time.Duration(monitorEvery), Clock: a.adapter, Logger: lg}, a.adapter, a.adapter, a.adapter)
	}
	switch {
	case a.cur == nil || a.cur.done:
		a.cur = a.s.startCoro(a.h.sidecar, nil, a.decideLoop)
	case a.idle:
		a.idle = false
		a.s.resume(a.cur)
	default:
		a.again = true // a pass runs: another one after it
	}
}

// decideLoop is the coroutine of this host's leader passes: one Decide per
// resume, then idle.
func (a *leaderActor) decideLoop(c *coro) {
	for {
		a.again = false
		if l := a.l; l != nil {
			l.Decide(a.ctx)
		}
		a.s.w.after(a.h.sidecar, 0, a.afterDecide)
		a.idle = true
		c.block()
		a.idle = false
	}
}

func (a *leaderActor) afterDecide() {
	if a.l == nil {
		return
	}
	if a.again {
		a.step()
		return
	}
	w := a.l.NextWake().UnixNano()
	if w != a.wakeAt {
		a.wakeAt = w
		a.h.clock.AtLocal(a.h.sidecar, w, a.step)
	}
}

func (a *leaderActor) crash() {
	if a.cur != nil {
		a.cur.kill()
	}
	a.cur, a.l = nil, nil
}

// simLeaderIO is the leader's Log, Peers, Raft and Clock on a sim host
// (the keeper's too: realkeeper.go adds what only the keeper asks).
type simLeaderIO struct {
	s *Sim
	h *Host
	// overlay: the promote-before-commit plant's view (realkeeper.go).
	overlay *overlay
}

func (io *simLeaderIO) State() *pb.ClusterState {
	if o := io.overlay; o != nil && o.active(io.h) {
		return o.st
	}
	return io.h.raft.State()
}

func (io *simLeaderIO) Changed() <-chan struct{} { return make(chan struct{}) }

func (io *simLeaderIO) Lease() (*pb.Lease, time.Time) {
	l, at := io.h.raft.Lease()
	return l, time.Unix(0, at)
}

func (io *simLeaderIO) Propose(ctx context.Context, cmd *pb.Command, timeout time.Duration) (fsm.Result, error) {
	if o := io.overlay; o != nil && o.active(io.h) {
		return o.propose(cmd)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second // Node.Propose's default
	}
	var res fsm.Result
	var err error
	got := false
	c := io.s.cur
	io.h.raft.Propose(cmd, int64(timeout), func(r fsm.Result, e error) {
		res, err, got = r, e, true
		io.s.wakeCo(c, io.h.sidecar)
	})
	io.s.block(ctx, func() bool { return got })
	if !got {
		return fsm.Result{}, ctx.Err()
	}
	if err == nil && res.Err != nil {
		err = res.Err
	}
	return res, err
}

// LSNs asks each node's sidecar over the model network for PeerService.LSN.
func (io *simLeaderIO) LSNs(ctx context.Context, nodes []*pb.Node, term uint64, timeout time.Duration) []*pb.LSNResponse {
	out := make([]*pb.LSNResponse, len(nodes))
	pending := len(nodes)
	expired := false
	me := io.h
	c := io.s.cur
	for i, n := range nodes {
		i, o := i, io.s.hosts[n.Id-1]
		io.s.net.send(me.id, o.id, o.sidecar, func() {
			a := lsnResponse(o)
			io.s.net.send(o.id, me.id, me.sidecar, func() {
				if !expired && out[i] == nil {
					out[i] = a
					pending--
					if pending == 0 {
						io.s.wakeCo(c, me.sidecar)
					}
				}
			})
		})
	}
	me.clock.After(me.sidecar, int64(timeout), func() {
		expired = true
		io.s.wakeCo(c, me.sidecar)
	})
	io.s.block(ctx, func() bool { return pending == 0 || expired })
	expired = true
	return out
}

// lsnResponse is PeerService.LSN answered by host o from its model Postgres.
func lsnResponse(o *Host) *pb.LSNResponse {
	resp := &pb.LSNResponse{NodeId: o.nodeID}
	if o.pg == nil {
		return nil // a witness refuses
	}
	if o.keeperA != nil && o.keeperA.k != nil {
		resp.LeaseAnchor = o.keeperA.k.NoteAnswer()
	}
	g := o.pg
	if !g.running || g.frozen() {
		resp.Reason = "postgres is not running"
		resp.Postgres = &pb.PostgresStatus{}
		return resp
	}
	resp.Healthy = true
	resp.Timeline = g.t.num
	resp.Postgres = &pb.PostgresStatus{Running: true, InRecovery: g.recovery, ReceiveLsn: g.lsn, ReplayLsn: g.lsn, FlushLsn: g.lsn, Timeline: g.t.num}
	return resp
}

func (io *simLeaderIO) Report(uint32) (uint64, time.Time, bool) { return 0, time.Time{}, false }

var errNoTransfer = errors.New("sim: raft leadership transfer is not modelled")

// Servers: membership is not modelled either, so the leader neither
// balances leadership nor changes voters.
func (io *simLeaderIO) Servers() ([]leader.Server, uint64, error) { return nil, 0, errNoTransfer }

func (io *simLeaderIO) AddVoter(context.Context, leader.Server, uint64) error { return errNoTransfer }

func (io *simLeaderIO) DemoteVoter(context.Context, string, uint64) error { return errNoTransfer }

func (io *simLeaderIO) AppliedIndex() uint64 { return io.h.raft.applied }

func (io *simLeaderIO) TransferLeadership(leader.Server) error { return errNoTransfer }

// Now is the host's monotonic clock.
func (io *simLeaderIO) Now() time.Time { return time.Unix(0, io.h.clock.Now()) }

// After, inside a step, waits d of the host's clock and returns a channel
// that is ready: a select on it and on channels nobody else can fill (a
// context with a wall-clock deadline) then takes it.
func (io *simLeaderIO) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	if io.s.cur == nil {
		io.h.clock.After(io.h.sidecar, int64(d), func() { ch <- io.Now() })
		return ch
	}
	if c := io.s.cur; c.cancelStep != nil && c.stepCtxDone() {
		return nil // the step's context ended: a select takes ctx.Done, never this
	}
	_ = io.Sleep(context.Background(), d)
	ch <- io.Now()
	return ch
}

// Sleep waits d of the host's clock inside the step.
func (io *simLeaderIO) Sleep(ctx context.Context, d time.Duration) error {
	done := false
	c := io.s.cur
	io.h.clock.After(io.h.sidecar, int64(d), func() { done = true; io.s.wakeCo(c, io.h.sidecar) })
	io.s.block(ctx, func() bool { return done })
	return ctx.Err()
}

// traceWriter puts the real leader's log lines into the trace.
type traceWriter struct{ s *Sim }

func (t traceWriter) Write(p []byte) (int, error) {
	t.s.trace("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
