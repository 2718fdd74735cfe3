package clock

import (
	"context"
	"testing"
	"time"
)

func TestManual(t *testing.T) {
	start := time.Unix(1000, 0)
	cases := []struct {
		name    string
		after   []time.Duration // timers made at start
		advance time.Duration
		fired   []bool
	}{
		{"nothing due yet", []time.Duration{time.Second}, 999 * time.Millisecond, []bool{false}},
		{"due exactly", []time.Duration{time.Second}, time.Second, []bool{true}},
		{"zero fires at once", []time.Duration{0}, 0, []bool{true}},
		{"only the passed ones", []time.Duration{time.Second, 3 * time.Second, 2 * time.Second}, 2 * time.Second, []bool{true, false, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManual(start)
			chs := make([]<-chan time.Time, len(tc.after))
			for i, d := range tc.after {
				chs[i] = m.After(d)
			}
			m.Advance(tc.advance)
			if got := m.Now(); !got.Equal(start.Add(tc.advance)) {
				t.Fatalf("Now = %v, want %v", got, start.Add(tc.advance))
			}
			for i, ch := range chs {
				select {
				case at := <-ch:
					if !tc.fired[i] {
						t.Fatalf("timer %d fired at %v", i, at)
					}
					if want := start.Add(tc.after[i]); !at.Equal(want) {
						t.Fatalf("timer %d fired with %v, want %v", i, at, want)
					}
				default:
					if tc.fired[i] {
						t.Fatalf("timer %d did not fire", i)
					}
				}
			}
		})
	}
}

func TestManualSleepAdvances(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	ch := m.After(50 * time.Millisecond)
	if err := m.Sleep(context.Background(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := m.Now().Sub(time.Unix(0, 0)); got != 100*time.Millisecond {
		t.Fatalf("after Sleep(100ms) the clock moved %v", got)
	}
	select {
	case <-ch:
	default:
		t.Fatal("a timer the sleep passed did not fire")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Sleep(ctx, time.Hour); err == nil || m.Now().Sub(time.Unix(0, 0)) != 100*time.Millisecond {
		t.Fatalf("Sleep on an ended context: err %v, clock %v", err, m.Now())
	}
	if _, ok := m.NextTimer(); ok {
		t.Fatal("a fired timer is still pending")
	}
}

func TestRealSleepCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Real{}).Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
}
