package keeper

import (
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
