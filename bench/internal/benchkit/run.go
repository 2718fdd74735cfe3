// Package benchkit holds what the benchmark programs under bench/ share: a
// lab on free loopback ports that is always torn down, a writer that records
// every successful INSERT, cluster queries and small statistics.
package benchkit

import (
	"context"
	"fmt"
	"github.com/hasidecar/hasidecar/internal/clock"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	envsMu sync.Mutex
	envs   = map[*Env]struct{}{}

	interrupted atomic.Bool
)

func register(e *Env) {
	envsMu.Lock()
	defer envsMu.Unlock()
	envs[e] = struct{}{}
}

func unregister(e *Env) {
	envsMu.Lock()
	defer envsMu.Unlock()
	delete(envs, e)
}

// closeAll tears down every lab that is still up.
func closeAll() {
	envsMu.Lock()
	list := make([]*Env, 0, len(envs))
	for e := range envs {
		list = append(list, e)
	}
	envsMu.Unlock()
	for _, e := range list {
		e.Close()
	}
}

// Main runs fn with a context that ends on SIGINT or SIGTERM and exits with
// its status. Every lab started through StartLab is torn down when fn
// returns or panics (in fn or in a goroutine started with Go), and at once
// on a second signal.
func Main(name string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for n := 1; ; n++ {
			s := <-sigs
			interrupted.Store(true)
			if n == 1 {
				fmt.Fprintf(os.Stderr, "\n%s: %s: stopping and tearing the lab down (repeat to force)\n", name, s)
				cancel()
				continue
			}
			fmt.Fprintf(os.Stderr, "%s: %s again: killing the lab now\n", name, s)
			closeAll()
			os.Exit(130)
		}
	}()
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				closeAll()
				panic(r)
			}
		}()
		if err := fn(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			code = 1
		}
	}()
	closeAll()
	cancel()
	if interrupted.Load() {
		code = 130
	}
	os.Exit(code)
}

// Go runs fn in a goroutine; a panic there tears every lab down before the
// program dies of it.
func Go(fn func()) {
	go func() {
		defer func() {
			if r := recover(); r != nil {
				closeAll()
				panic(r)
			}
		}()
		fn()
	}()
}

// Logf prints a progress line (not a result) on stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Sleep waits d or until ctx ends (internal/clock's real clock).
func Sleep(ctx context.Context, d time.Duration) error { return clock.Real{}.Sleep(ctx, d) }
