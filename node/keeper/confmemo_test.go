package keeper

import (
	"context"
	"testing"
	"time"
)

// TestConfMemo: a configure with the inputs of the last one is skipped
// until configureRecheck has passed; any other input writes again.
func TestConfMemo(t *testing.T) {
	settings := map[string]string{"b": "2", "a": "1"}
	key := configureKey(settings, struct{ Members []string }{[]string{"pg2"}}, "host=pg1", "pg2", true, true)
	m := confMemo{key: key, at: t0}
	for _, tc := range []struct {
		name string
		key  string
		at   time.Duration
		want bool
	}{
		{"same inputs, a moment later", key, time.Second, true},
		{"same map in another order", configureKey(map[string]string{"a": "1", "b": "2"}, struct{ Members []string }{[]string{"pg2"}}, "host=pg1", "pg2", true, true), time.Second, true},
		{"same inputs, recheck due", key, configureRecheck, false},
		{"a setting changed", configureKey(map[string]string{"a": "1", "b": "3"}, struct{ Members []string }{[]string{"pg2"}}, "host=pg1", "pg2", true, true), time.Second, false},
		{"hba members changed", configureKey(settings, struct{ Members []string }{[]string{"pg2", "pg3"}}, "host=pg1", "pg2", true, true), time.Second, false},
		{"new upstream", configureKey(settings, struct{ Members []string }{[]string{"pg2"}}, "host=pg3", "pg2", true, true), time.Second, false},
		{"postgres stopped", configureKey(settings, struct{ Members []string }{[]string{"pg2"}}, "host=pg1", "pg2", true, false), time.Second, false},
		{"role changed", configureKey(settings, struct{ Members []string }{[]string{"pg2"}}, "host=pg1", "pg2", false, true), time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.fresh(tc.key, t0.Add(tc.at)); got != tc.want {
				t.Fatalf("fresh = %v, want %v", got, tc.want)
			}
		})
	}
	if (&confMemo{}).fresh(configureKey(nil, nil, "", "", false, false), t0) {
		t.Fatal("an empty memo is fresh")
	}
}

// TestConfigureMemo: the reconciler's configure writes the managed files
// once for the same inputs, again once configureRecheck has passed, and
// again after an action that may have rewritten them.
func TestConfigureMemo(t *testing.T) {
	ctx := context.Background()
	k, clk, _, pg := primaryCluster(t)
	writes := func() int { pg.mu.Lock(); defer pg.mu.Unlock(); return pg.configWrites }
	act := action{Kind: actConfigure, Term: 1}
	for i := 0; i < 3; i++ {
		if err := k.execute(ctx, act); err != nil {
			t.Fatal(err)
		}
	}
	if n := writes(); n != 1 {
		t.Fatalf("%d writes for three rounds with the same inputs, want 1", n)
	}
	clk.Advance(configureRecheck)
	if err := k.execute(ctx, act); err != nil || writes() != 2 {
		t.Fatalf("after configureRecheck: %d writes (%v), want 2", writes(), err)
	}
	// A state-changing action (here a stop, then a start) forgets the memo.
	if err := k.execute(ctx, action{Kind: actStop, Term: 1}); err != nil {
		t.Fatal(err)
	}
	_ = pg.Start(ctx)
	if err := k.execute(ctx, act); err != nil || writes() != 3 {
		t.Fatalf("after a stop and start: %d writes (%v), want 3", writes(), err)
	}
}
