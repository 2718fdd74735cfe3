package sim

// The product's timing defaults the sim runs with, and the guard process.

const (
	leaseDur         = 4 * sec
	fenceMarginDur   = 500 * ms
	monitorEvery     = 1 * sec
	restartTimeout   = 10 * sec
	walSenderTimeout = 10 * sec
)

// simSysID is the cluster's Postgres system identifier.
const simSysID = 42

// Guard is the pgguard process: it kills Postgres once the deadline it was
// given passes on the host's clock, and its lease gate answers commits only
// before that deadline (pg.gateOpen).
type Guard struct {
	s        *Sim
	h        *Host
	armed    bool
	deadline int64
	// piped: the last line the sidecar wrote into the guard's pipe arms it
	// (the guard reads it when it runs next, even if the sidecar froze).
	piped bool
}

func (g *Guard) set(armed bool, dl int64) {
	g.armed, g.deadline = armed, dl
	if armed {
		if g.h.pg != nil && g.h.pg.running {
			g.h.pg.guarded = true
		}
		g.h.clock.AtLocal(g.h.guardProc, dl, g.check)
	}
}

func (g *Guard) check() {
	pg := g.h.pg
	if !g.armed || g.h.clock.Now() < g.deadline || !pg.running || pg.recovery {
		return
	}
	if g.s.cfg.plant == plantNoFence {
		return // planted: nothing stops Postgres
	}
	g.s.trace("%s guard kills postgres", g.h.name)
	g.armed, g.piped = false, false // it exits: a new one is started and armed
	pg.crash()
}

const maxLagOnFailover = 16 << 20
