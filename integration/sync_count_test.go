package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// syncView is one reading of the committed synchronous set and count
// (through a sidecar's Show: the FSM as it applied it).
type syncView struct {
	set   []string
	count uint32
	mode  string
	k     int32
}

func (v syncView) String() string {
	return fmt.Sprintf("%s k=%d committed ANY %d %v", v.mode, v.k, v.count, v.set)
}

func (c *cluster) syncView(via string) (syncView, error) {
	r, err := c.show(via)
	if err != nil {
		return syncView{}, err
	}
	v := syncView{count: r.SyncCommittedCount, mode: r.SyncMode, k: r.SynchronousCount}
	for _, n := range r.Nodes {
		if n.SyncStandby {
			v.set = append(v.set, n.Name)
		}
	}
	sort.Strings(v.set)
	return v, nil
}

// ssnPattern reads synchronous_standby_names as hasidecar writes it.
var ssnPattern = regexp.MustCompile(`^ANY (\d+) \((.*)\)$`)

// parseSSN: the count and names of an ANY k (…) value; ok false for the
// lease gate or an empty value (no standby named).
func parseSSN(v string) (k int, names []string, ok bool) {
	m := ssnPattern.FindStringSubmatch(v)
	if m == nil {
		return 0, nil, false
	}
	k, _ = strconv.Atoi(m[1])
	for _, q := range strings.Split(m[2], ", ") {
		names = append(names, strings.Trim(q, `"`))
	}
	sort.Strings(names)
	return k, names, true
}

func (c *cluster) ssn(node string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, node)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&v); err != nil {
		return err.Error()
	}
	return v
}

func (c *cluster) configSet(via string, kv ...string) {
	c.t.Helper()
	out, errOut, code := c.cli(append([]string{"config", "set", "--addr", c.node(via).GRPCAddr()}, kv...)...)
	if code != 0 {
		c.t.Fatalf("config set %v exited %d: %s %s", kv, code, out, errOut)
	}
}

// TestSynchronousCountHostKill: synchronous_count 2 over three standbys
// (plus a witness). In each of three rounds, after a random 0–1.5 s
// (SYNC_SEED replays), the primary's host is SIGKILLed while a writer
// runs; the new primary holds every acknowledged write, and the old one
// comes back as a standby for the next round. One primary at the end.
func TestSynchronousCountHostKill(t *testing.T) {
	seed := envUint(t, "SYNC_SEED", uint64(time.Now().UnixNano()))
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	t.Logf("seed %d (replay: SYNC_SEED=%d)", seed, seed)
	s := startWorkload(t, clusterOpts{standbys: 3, witness: true, tune: func(c *config.Config) { c.Synchronous = true }})
	s.configSet("witness", "synchronous_count=2")
	primary := s.primary
	for round := 1; round <= 3; round++ {
		var standbys []string
		for _, n := range s.lab.DataNodes() {
			if n.Name != primary {
				standbys = append(standbys, n.Name)
			}
		}
		sort.Strings(standbys)
		want := syncView{set: standbys, count: 2, mode: "on", k: 2}
		eventually(t, 90*time.Second, fmt.Sprintf("round %d: %s waits for ANY 2 of %v, committed", round, primary, standbys), func() string {
			v, err := s.syncView("witness")
			if err != nil {
				return err.Error()
			}
			if v.String() != want.String() {
				return v.String()
			}
			if k, names, ok := parseSSN(s.ssn(primary)); !ok || k != 2 || !slices.Equal(names, standbys) {
				return "synchronous_standby_names " + s.ssn(primary)
			}
			return ""
		})
		delay := time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))
		time.Sleep(delay)
		kill := time.Now()
		s.lab.KillHost(s.node(primary))
		np := s.waitPrimaryExcept(40*time.Second, primary)
		after := time.Now().Add(time.Second) // an answer of the dead primary may still be read just after the kill
		eventually(t, 30*time.Second, "a write acknowledged by "+np, func() string {
			if s.writer.lastAck().Before(after) {
				return "none yet"
			}
			return ""
		})
		acked := s.writer.ackedIDs()
		s.assertHas(np, acked)
		t.Logf("round %d: killed %s %s in, %s primary after %s; all %d acknowledged writes on it",
			round, primary, delay.Round(time.Millisecond), np, time.Since(kill).Round(time.Millisecond), len(acked))
		s.start(primary)
		primary = np
	}
	s.writer.stop()
	s.assertHas(primary, s.writer.ackedIDs())
	v, err := s.show("witness")
	if err != nil {
		t.Fatal(err)
	}
	var prims []string
	for _, n := range v.Nodes {
		if n.Role == pb.NodeRole_NODE_ROLE_PRIMARY || (n.Postgres.GetRunning() && !n.Postgres.GetInRecovery() && n.Kind == pb.NodeKind_NODE_KIND_DATA) {
			prims = append(prims, n.Name)
		}
	}
	if len(prims) != 1 || prims[0] != primary {
		t.Fatalf("primaries at the end: %v, want [%s]", prims, primary)
	}
	if fo := s.events("witness", "failover"); len(fo) != 3 {
		t.Fatalf("failover events: %d, want 3", len(fo))
	}
}

// TestSynchronousStrict: synchronous: strict with every synchronous
// standby's WAL receiver stopped (SIGSTOP): a commit on the primary does
// not return, the set is not narrowed, and the commit completes once one
// standby streams again.
func TestSynchronousStrict(t *testing.T) {
	needPostgres(t)
	c := newCluster(t, clusterOpts{standbys: 2, witness: true, tune: func(cf *config.Config) { cf.Synchronous = true }})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	primary := primaryName(v)
	standbys := []string{}
	for _, n := range c.lab.DataNodes() {
		if n.Name != primary {
			standbys = append(standbys, n.Name)
		}
	}
	sort.Strings(standbys)
	c.configSet("witness", "synchronous=strict")
	eventually(t, 60*time.Second, "both standbys in the set, strict", func() string {
		v, err := c.syncView("witness")
		if err != nil {
			return err.Error()
		}
		if v.mode != "strict" || !slices.Equal(v.set, standbys) {
			return v.String()
		}
		return ""
	})
	c.exec(primary, "CREATE TABLE strict_t (id int)")
	var pids []int
	for _, sb := range standbys {
		pid := walReceiverPID(t, c, sb)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	})
	stopped := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := c.connect(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "INSERT INTO strict_t VALUES (1)")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the commit returned (%v) %s after every synchronous standby stopped, want it waiting", err, time.Since(stopped).Round(time.Millisecond))
	case <-time.After(6 * time.Second):
	}
	// Past wal_sender_timeout (10 s) the walsenders are gone: on would
	// narrow now; strict keeps both named and the commit waiting.
	select {
	case err := <-done:
		t.Fatalf("the commit returned (%v) %s after every synchronous standby stopped, want it waiting", err, time.Since(stopped).Round(time.Millisecond))
	case <-time.After(time.Until(stopped.Add(14 * time.Second))):
	}
	if v, err := c.syncView("witness"); err != nil || !slices.Equal(v.set, standbys) {
		t.Fatalf("strict: the set 14 s without streaming standbys: %v (%v), want %v", v, err, standbys)
	}
	if got, want := c.ssn(primary), fmt.Sprintf(`ANY 1 ("%s")`, strings.Join(standbys, `", "`)); got != want {
		t.Fatalf("strict: synchronous_standby_names %q, want %q", got, want)
	}
	t.Logf("commit still pending 14 s after both WAL receivers stopped; synchronous_standby_names %q", c.ssn(primary))
	resumed := time.Now()
	if err := syscall.Kill(pids[0], syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the commit failed once %s streamed again: %v", standbys[0], err)
		}
		t.Logf("the commit completed %s after %s's WAL receiver resumed", time.Since(resumed).Round(time.Millisecond), standbys[0])
	case <-time.After(30 * time.Second):
		t.Fatalf("the commit still waits 30 s after %s streams again", standbys[0])
	}
	_ = syscall.Kill(pids[1], syscall.SIGCONT)
}

// TestSynchronousSwitchUnderLoad: synchronous off/on/strict and
// synchronous_count switched at runtime under a writer, while the
// committed set (the primary's sidecar) and the primary's
// synchronous_standby_names are sampled every ~20 ms: in every sample
// whose set and count did not change across the reading, the names are
// within the set and the count is at least the committed one (the
// covering invariant); none is lost at the end either.
func TestSynchronousSwitchUnderLoad(t *testing.T) {
	s := startWorkload(t, clusterOpts{standbys: 2, witness: true, tune: func(c *config.Config) { c.Synchronous = true }})
	primary := s.primary
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := s.connect(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	type sample struct {
		v   syncView
		ssn string
	}
	stop := make(chan struct{})
	res := make(chan []sample, 1)
	var bad []string
	skipped := 0
	go func() {
		var out []sample
		for {
			select {
			case <-stop:
				res <- out
				return
			default:
			}
			before, err1 := s.syncView(primary)
			var ssn string
			err2 := conn.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&ssn)
			after, err3 := s.syncView(primary)
			if err1 == nil && err2 == nil && err3 == nil {
				if before.String() != after.String() {
					skipped++
				} else {
					out = append(out, sample{v: before, ssn: ssn})
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	steps := [][]string{
		{"synchronous_count=2"}, {"synchronous=off"}, {"synchronous=on"}, {"synchronous=strict"},
		{"synchronous_count=1"}, {"synchronous=on", "synchronous_count=2"}, {"synchronous_count=1"}, {"synchronous=off"}, {"synchronous=on"},
	}
	for _, kv := range steps {
		s.configSet("witness", kv...)
		time.Sleep(2500 * time.Millisecond)
	}
	close(stop)
	samples := <-res
	seen := map[string]int{}
	for _, sm := range samples {
		seen[sm.ssn]++
		if len(sm.v.set) == 0 {
			continue // no committed set: no synchronous failover to cover
		}
		k, names, ok := parseSSN(sm.ssn)
		if !ok {
			continue // the lease gate: waits for no standby, claims nothing
		}
		for _, n := range names {
			if !slices.Contains(sm.v.set, n) {
				bad = append(bad, fmt.Sprintf("%q names %s outside the committed %s", sm.ssn, n, sm.v))
			}
		}
		if uint32(k) < sm.v.count {
			bad = append(bad, fmt.Sprintf("%q waits for %d, fewer than the committed %s", sm.ssn, k, sm.v))
		}
	}
	t.Logf("%d samples (%d skipped: the set changed during the reading); values seen: %v", len(samples), skipped, seen)
	if len(bad) > 0 {
		t.Fatalf("covering invariant broken in %d samples, e.g. %v", len(bad), bad[:min(len(bad), 5)])
	}
	if len(samples) < 200 {
		t.Fatalf("only %d samples", len(samples))
	}
	if seen[fmt.Sprintf(`ANY 2 ("%s")`, strings.Join(s.standbys(), `", "`))] == 0 {
		t.Fatalf("synchronous_count=2 never reached Postgres: %v", seen)
	}
	s.writer.stop()
	s.assertHas(primary, s.caughtUpAcksOf(primary, s.standbys()...))
}
