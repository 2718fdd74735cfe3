package keeper

import (
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestPlanAdopt: the adoption rows of plan() (planAdopt): a postmaster the
// previous sidecar left running under its guard.
func TestPlanAdopt(t *testing.T) {
	primary := func() desired { d := desiredPrimary(); d.HoldsLease = true; return d }
	armed := &adoptable{PID: 4242, GuardPID: 4242, Armed: true, Term: planTestTerm, InTime: true}
	with := func(a *adoptable, f func(*adoptable)) *adoptable { c := *a; f(&c); return &c }
	running := func(a *adoptable) observed {
		return observed{Dir: dirValid, SysID: planTestSysID, Timeline: 3, StandbySignal: !a.Armed, Adopt: a}
	}
	cases := []struct {
		name    string
		d       desired
		o       observed
		want    []string
		inherit bool
		reason  string
	}{
		{name: "primary, lease holder, same term, in time: adopt with the lease",
			d: primary(), o: running(armed), want: []string{"adopt"}, inherit: true, reason: "and its lease of term 7"},
		{name: "primary, deadline passed: adopt and fence",
			d: primary(), o: running(with(armed, func(a *adoptable) { a.InTime = false })), want: []string{"adopt", "stop"}, reason: "deadline has passed"},
		{name: "primary, guard of an older term: adopt and fence",
			d: primary(), o: running(with(armed, func(a *adoptable) { a.Term = planTestTerm - 1 })), want: []string{"adopt", "stop"}, reason: "belongs to term 6"},
		{name: "primary row but the lease holder is another node: adopt and fence",
			d: func() desired { d := primary(); d.HoldsLease = false; return d }(), o: running(armed), want: []string{"adopt", "stop"}, reason: "does not hold the lease"},
		{name: "another node promoted meanwhile: adopt the writable one and fence",
			d: desiredStandby(), o: running(armed), want: []string{"adopt", "stop"}, reason: "does not hold the lease"},
		{name: "standby with a disarmed guard: adopt as a standby",
			d: desiredStandby(), o: running(with(armed, func(a *adoptable) { a.Armed, a.InTime, a.Term = false, false, 0 })), want: []string{"adopt standby"}, reason: "standby postmaster"},
		{name: "promoted while the sidecar was away, guard disarmed: adopt as a standby (then promote)",
			d: primary(), o: running(with(armed, func(a *adoptable) { a.Armed, a.InTime = false, false })), want: []string{"adopt standby"}, reason: "standby postmaster"},
		{name: "the guard guards another pid: nothing",
			d: primary(), o: running(with(armed, func(a *adoptable) { a.GuardPID = 99 })), want: []string{}, reason: "guards pid 99"},
		{name: "another cluster's data directory: refused, nothing",
			d: primary(), o: func() observed { o := running(armed); o.SysID = planForeignSys; return o }(), want: []string{}, reason: "belongs to another cluster"},
		{name: "the data directory's identifier unknown: wait",
			d: primary(), o: func() observed { o := running(armed); o.SysID = 0; return o }(), want: []string{}, reason: "waiting for the system identifiers"},
		{name: "the cluster's identifier not recorded: wait",
			d: func() desired { d := primary(); d.ClusterSysID = 0; return d }(), o: running(armed), want: []string{}, reason: "waiting for the system identifiers"},
		{name: "not registered: wait",
			d: func() desired { d := primary(); d.Me, d.Primary = nil, nil; return d }(), o: running(armed), want: []string{}, reason: "waiting to be registered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acts, why := plan(c.d, c.o)
			if got := describeActions(acts); !slices.Equal(got, c.want) {
				t.Fatalf("actions %q, want %q (%s)", got, c.want, why)
			}
			if !strings.Contains(why, c.reason) {
				t.Fatalf("reason %q lacks %q", why, c.reason)
			}
			if len(acts) > 0 {
				if acts[0].PID != c.o.Adopt.PID || acts[0].InheritLease != c.inherit || acts[0].Term != c.d.Term {
					t.Fatalf("adopt action %+v: want pid %d, inherit %t, term %d", acts[0], c.o.Adopt.PID, c.inherit, c.d.Term)
				}
			}
		})
	}
}

// TestPlanAdoptProperty: whatever the FSM and the guard say, an adopted
// postmaster whose guard was armed (it may accept writes) is left running
// only with the lease of the current term inherited, which needs this node
// to be the primary and lease holder, the guard's term the current one and
// its deadline not passed; every other armed adoption is followed by a
// stop in the same plan.
func TestPlanAdoptProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := desiredStandby()
		if rapid.Bool().Draw(t, "primary") {
			d = desiredPrimary()
		}
		d.HoldsLease = rapid.Bool().Draw(t, "holds")
		d.LeaseValid = rapid.Bool().Draw(t, "valid")
		ad := &adoptable{PID: 10, GuardPID: rapid.SampledFrom([]int{10, 11}).Draw(t, "guardpid"),
			Armed: rapid.Bool().Draw(t, "armed"), Term: rapid.Uint64Range(planTestTerm-1, planTestTerm+1).Draw(t, "term"),
			InTime: rapid.Bool().Draw(t, "intime")}
		o := observed{Dir: dirValid, SysID: rapid.SampledFrom([]uint64{0, planTestSysID, planForeignSys}).Draw(t, "sysid"), Adopt: ad}
		acts, why := plan(d, o)
		if len(acts) == 0 {
			return
		}
		a := acts[0]
		if a.Kind != actAdopt || a.PID != 10 || ad.GuardPID != 10 || o.SysID != planTestSysID {
			t.Fatalf("first action %v for %+v sysid %d (%s)", a.Kind, ad, o.SysID, why)
		}
		keeps := len(acts) == 1
		if !ad.Armed {
			if !keeps || !a.AsStandby || a.InheritLease {
				t.Fatalf("disarmed: %q inherit %t (%s)", describeActions(acts), a.InheritLease, why)
			}
			return
		}
		mayWrite := d.Primary != nil && d.Primary.Id == d.Me.Id && d.HoldsLease && ad.Term == d.Term && ad.InTime
		if keeps != mayWrite || a.InheritLease != mayWrite {
			t.Fatalf("armed %+v, desired holds %t: %q inherit %t, want keep %t (%s)", ad, d.HoldsLease, describeActions(acts), a.InheritLease, mayWrite, why)
		}
		if !keeps && acts[1].Kind != actStop {
			t.Fatalf("armed, not ours: %q", describeActions(acts))
		}
	})
}
