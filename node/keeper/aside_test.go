package keeper

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestAside: step-driven, tasks wait for Aside and run in order (a task
// queued by a task included); under Run they start at once and Run joins
// them before returning.
func TestAside(t *testing.T) {
	k, _, _, _ := primaryCluster(t)
	var order []int
	k.goAside(func(context.Context) { order = append(order, 1) })
	k.goAside(func(context.Context) {
		order = append(order, 2)
		k.goAside(func(context.Context) { order = append(order, 3) })
	})
	if len(order) != 0 {
		t.Fatal("a task ran before Aside")
	}
	if n := k.Aside(context.Background()); n != 3 || !slices.Equal(order, []int{1, 2, 3}) {
		t.Fatalf("Aside ran %d tasks in order %v, want 3 in order 1 2 3", n, order)
	}
	if n := k.Aside(context.Background()); n != 0 {
		t.Fatalf("a second Aside ran %d tasks", n)
	}
}

// TestRunJoins: Run returns once its context ends, after its loops and
// the tasks started aside (which see the context end) have returned.
func TestRunJoins(t *testing.T) {
	k, _, _, _ := primaryCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	taskDone := make(chan struct{})
	k.goAside(func(ctx context.Context) { <-ctx.Done(); close(taskDone) }) // pending before Run
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	select {
	case <-taskDone:
	default:
		t.Fatal("Run returned before a task it started aside")
	}
}
