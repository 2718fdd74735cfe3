package node

import (
	"net/url"
	"testing"
	"time"
)

func TestCheckEndpoint(t *testing.T) {
	primary := healthFacts{Data: true, Running: true, Writable: true, LagBytes: -1, RaftLeader: true, LoopLimit: 5 * time.Second}
	standby := healthFacts{Data: true, Running: true, InRecovery: true, Streaming: true, LagBytes: 1000, RaftLeader: true, LoopLimit: 5 * time.Second}
	with := func(f healthFacts, change func(*healthFacts)) healthFacts { change(&f); return f }
	syncStandby := with(standby, func(f *healthFacts) { f.SyncMember, f.Synchronous = true, true })
	notStreaming := with(standby, func(f *healthFacts) { f.Streaming = false })
	stopped := healthFacts{Data: true, LagBytes: -1, RaftLeader: true, LoopLimit: 5 * time.Second}
	fencedPrimary := with(primary, func(f *healthFacts) { f.Writable = false }) // running, out of recovery, lease lost
	noLB := with(standby, func(f *healthFacts) { f.NoLoadBalance = true })
	unknownLag := with(standby, func(f *healthFacts) { f.LagBytes = -1 })
	witness := healthFacts{LagBytes: -1, RaftLeader: true, LoopLimit: 5 * time.Second}
	lonelyWitness := with(witness, func(f *healthFacts) { f.RaftLeader = false })
	stuck := with(standby, func(f *healthFacts) { f.LoopAge = 6 * time.Second })

	cases := []struct {
		path, query string
		f           healthFacts
		ok          bool
		badQuery    bool
	}{
		{"/primary", "", primary, true, false},
		{"/leader", "", primary, true, false},
		{"/read-write", "", primary, true, false},
		{"/primary", "", fencedPrimary, false, false},
		{"/primary", "", standby, false, false},
		{"/primary", "lag=1MB", primary, false, true},
		{"/replica", "", standby, true, false},
		{"/replica", "", primary, false, false},
		{"/replica", "", notStreaming, false, false},
		{"/replica", "", noLB, false, false},
		{"/replica", "", stopped, false, false},
		{"/replica", "lag=1kB", standby, true, false},  // 1000 <= 1024
		{"/replica", "lag=999", standby, false, false}, // 1000 > 999
		{"/replica", "lag=16MB", unknownLag, false, false},
		{"/replica", "lag=lots", standby, false, true},
		{"/read-only", "", primary, true, false},
		{"/read-only", "", standby, true, false},
		{"/read-only", "lag=10", primary, true, false}, // the primary has no lag
		{"/read-only", "lag=10", standby, false, false},
		{"/read-only", "", fencedPrimary, false, false},
		{"/read-only", "", stopped, false, false},
		{"/sync", "", syncStandby, true, false},
		{"/synchronous", "", standby, false, false},
		{"/sync", "", primary, false, false},
		{"/async", "", standby, true, false},
		{"/asynchronous", "", syncStandby, false, false},
		{"/async", "", primary, false, false},
		{"/health", "", primary, true, false},
		{"/health", "", fencedPrimary, true, false},
		{"/health", "", stopped, false, false},
		{"/health", "", witness, true, false},
		{"/liveness", "", standby, true, false},
		{"/liveness", "", stuck, false, false},
		{"/liveness", "", stopped, true, false}, // Postgres down is not the sidecar stuck
		{"/readiness", "", primary, true, false},
		{"/readiness", "", standby, true, false},
		{"/readiness", "", notStreaming, false, false},
		{"/readiness", "", fencedPrimary, false, false},
		{"/readiness", "", witness, true, false},
		{"/readiness", "", lonelyWitness, false, false},
	}
	for _, tc := range cases {
		e := findEndpoint(tc.path)
		if e == nil {
			t.Fatalf("no endpoint %s", tc.path)
		}
		q, _ := url.ParseQuery(tc.query)
		ok, reason, err := e.check(q, tc.f)
		if (err != nil) != tc.badQuery {
			t.Errorf("%s?%s: error %v, want bad query %v", tc.path, tc.query, err, tc.badQuery)
			continue
		}
		if err == nil && ok != tc.ok {
			t.Errorf("%s?%s with %+v: ok %v (%s), want %v", tc.path, tc.query, tc.f, ok, reason, tc.ok)
		}
		if err == nil && !ok && reason == "" {
			t.Errorf("%s?%s: a failed check without a reason", tc.path, tc.query)
		}
	}
	if findEndpoint("/cluster") != nil || findEndpoint("/nope") != nil {
		t.Error("findEndpoint found a check that is not one")
	}
}
