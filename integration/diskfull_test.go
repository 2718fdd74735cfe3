package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hasidecar/hasidecar/config"
	"github.com/hasidecar/hasidecar/fsm"
)

// smallDisk mounts a tmpfs of size bytes on a fresh directory and unmounts
// it when the test ends (after the lab's teardown, which is registered
// later and so runs first), failed or not.
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755) // the postgres OS user traverses it
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the tmpfs on %s: %v", dir, err)
		}
	})
	return dir
}

// fill allocates a file on dir's filesystem so that leave bytes stay free.
func fill(t *testing.T, dir string, leave uint64) string {
	t.Helper()
	var s unix.Statfs_t
	if err := unix.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	free := s.Bavail * uint64(s.Bsize)
	if free <= leave {
		t.Fatalf("only %d bytes free on %s, wanted more than %d", free, dir, leave)
	}
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(free-leave)); err != nil {
		t.Fatalf("fallocate %d bytes in %s: %v", free-leave, path, err)
	}
	return path
}

// metric reads one unlabelled-by-us gauge from a node's /metrics.
func metric(addr, name string) (float64, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics of %s", name, addr)
}

// TestDiskFull: the primary's data directory lives on a 300MB tmpfs; a
// filler leaves less than postgres.disk_full_threshold (64MB) free. The
// condition must show: one disk_full event, node check CRITICAL naming the
// disk, /metrics below the threshold; once the filler is gone, one
// disk_ok event and node check OK.
func TestDiskFull(t *testing.T) {
	needPostgres(t)
	disk := smallDisk(t, 300<<20)
	const threshold = uint64(config.DefaultDiskFullThreshold)
	c := newCluster(t, clusterOpts{standbys: 1, witness: true, tune: func(cfg *config.Config) {
		if cfg.Name == "pg1" { // pg1 bootstraps: the primary
			cfg.Postgres.DataDir = filepath.Join(disk, "data")
		}
	}})
	c.start()
	v := c.waitHealthy(120 * time.Second)
	if p := primaryName(v); p != "pg1" {
		t.Fatalf("primary is %q, want pg1 (on the small disk)", p)
	}
	pg1 := c.node("pg1")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", pg1.HTTPPort)
	check := func() (string, int) {
		out, errOut, code := c.cli("node", "check", "--addr", pg1.GRPCAddr())
		return out + errOut, code
	}
	eventually(t, 30*time.Second, "node check OK with the disk measured", func() string {
		if out, code := check(); code != 0 || !strings.Contains(out, "disk: OK") {
			return fmt.Sprintf("exit %d: %s", code, out)
		}
		return ""
	})

	start := time.Now()
	filler := fill(t, disk, threshold/2)
	eventually(t, 30*time.Second, "a disk_full event for pg1", func() string {
		if ev := c.events("pg2", fsm.EventDiskFull); len(ev) == 0 {
			return "no disk_full event"
		}
		return ""
	})
	t.Logf("disk_full event %s after the fill", time.Since(start).Round(time.Millisecond))
	out, code := check()
	if code != checkCriticalExit || !strings.Contains(out, "disk: CRITICAL (") || !strings.Contains(out, "bytes free on the data directory's filesystem (threshold 67108864)") {
		t.Errorf("node check on a full disk: exit %d, want %d naming the disk:\n%s", code, checkCriticalExit, out)
	}
	// /metrics follows the report loop: up to a monitor interval behind.
	eventually(t, 5*time.Second, "hasidecar_data_dir_free_bytes below the threshold", func() string {
		if free, err := metric(httpAddr, "hasidecar_data_dir_free_bytes"); err != nil || free >= float64(threshold) {
			return fmt.Sprintf("%v (%v), want below %d", free, err, threshold)
		}
		return ""
	})
	if total, err := metric(httpAddr, "hasidecar_data_dir_total_bytes"); err != nil || total != 300<<20 {
		t.Errorf("hasidecar_data_dir_total_bytes = %v (%v), want %d", total, err, 300<<20)
	}
	// Once per condition, not once per sample.
	time.Sleep(3 * time.Second)
	if ev := c.events("pg2", fsm.EventDiskFull); len(ev) != 1 || !strings.Contains(ev[0].Details, "data directory's filesystem") {
		t.Errorf("disk_full events after 3 more samples: %v, want one naming the data directory's filesystem", ev)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a disk_ok event for pg1", func() string {
		if ev := c.events("pg2", fsm.EventDiskOK); len(ev) == 0 {
			return "no disk_ok event"
		}
		return ""
	})
	eventually(t, 30*time.Second, "node check OK again", func() string {
		if out, code := check(); code != 0 || !strings.Contains(out, "disk: OK") {
			return fmt.Sprintf("exit %d: %s", code, out)
		}
		return ""
	})
	time.Sleep(2 * time.Second)
	if full, ok := len(c.events("pg2", fsm.EventDiskFull)), len(c.events("pg2", fsm.EventDiskOK)); full != 1 || ok != 1 {
		t.Errorf("%d disk_full and %d disk_ok events, want one each", full, ok)
	}
	if free, err := metric(httpAddr, "hasidecar_data_dir_free_bytes"); err != nil || free < 2*float64(threshold) { // 2 s: two report intervals
		t.Errorf("hasidecar_data_dir_free_bytes after recovery = %v (%v), want at least %d", free, err, 2*threshold)
	}
}

// checkCriticalExit is node check's CRITICAL exit code (Nagios).
const checkCriticalExit = 2

// TestStorageFailover: failover_on_storage_failure 5s and the primary's
// data directory on a 300MB tmpfs, filled below the disk-full threshold.
// After 5 s of a full disk (not before) the primary fences its Postgres,
// records storage_failure and releases its lease; the standby is promoted
// in term 2, with every acknowledged write, and only one node accepts
// writes at any moment. The old primary stays stopped while its disk is
// full, then rewinds and rejoins as a standby of the new primary once the
// space is freed.
func TestStorageFailover(t *testing.T) {
	disk := smallDisk(t, 300<<20)
	const after = 5 * time.Second
	s := startWorkload(t, clusterOpts{standbys: 1, witness: true, tune: func(cfg *config.Config) {
		cfg.FailoverOnStorageFailure = config.Duration(after) // cluster-wide: pg1's is taken
		if cfg.Name == "pg1" {                                // pg1 bootstraps: the primary
			cfg.Postgres.DataDir = filepath.Join(disk, "data")
		}
	}})
	if s.primary != "pg1" {
		t.Fatalf("primary is %q, want pg1 (on the small disk)", s.primary)
	}
	acked := s.caughtUpAcks()
	pm := s.node("pg1").PostmasterPID()
	if pm == 0 {
		t.Fatal("no postmaster pid for pg1")
	}

	filledAt := time.Now()
	filler := fill(t, disk, uint64(config.DefaultDiskFullThreshold)/2)
	np := s.waitNewPrimary("pg1", 60*time.Second)
	took := time.Since(filledAt)
	t.Logf("%s promoted %s after pg1's disk was filled", np, took.Round(10*time.Millisecond))
	if np != "pg2" {
		t.Fatalf("new primary %q, want pg2", np)
	}
	if took < after {
		t.Errorf("failover %s after the fill, before failover_on_storage_failure (%s)", took.Round(time.Millisecond), after)
	}
	s.assertTerm(np, 2)
	ev := s.events(np, fsm.EventStorageFailure)
	if len(ev) != 1 || ev[0].NodeName != "pg1" || !ev[0].Ok ||
		!strings.Contains(ev[0].Details, "(failover_on_storage_failure 5s): fencing postgres and releasing the lease; \"pg2\" can take over") {
		t.Fatalf("storage_failure events: %v, want one for pg1 naming pg2", ev)
	}
	if rel := s.events(np, fsm.EventLeaseRelease); len(rel) != 1 || rel[0].NodeName != "pg1" || !strings.Contains(rel[0].Details, "storage failure: ") {
		t.Fatalf("lease_release events: %v, want one for pg1 naming the storage failure", rel)
	}
	if f := s.events(np, fsm.EventFence); len(f) == 0 || f[len(f)-1].NodeName != "pg1" {
		t.Errorf("fence events: %v, want pg1's", f)
	}
	if processAlive(pm) {
		t.Fatalf("pg1's postmaster %d still runs after the failover", pm)
	}
	s.assertHas(np, acked)

	// While the disk stays full pg1 neither restarts nor rewinds.
	time.Sleep(3 * time.Second)
	if pid := s.node("pg1").PostmasterPID(); pid != 0 && processAlive(pid) {
		t.Fatalf("pg1 started Postgres (pid %d) while its disk is still full", pid)
	}
	if ev := s.events(np, fsm.EventNodeRewind); len(ev) != 0 {
		t.Fatalf("node_rewind events while pg1's disk is full: %v", ev)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.followsOn("pg1", np, 2, 60*time.Second)
	if ev := s.events(np, fsm.EventNodeRejoin); len(ev) != 1 || ev[0].NodeName != "pg1" {
		t.Fatalf("node_rejoin events: %v, want one for pg1", ev)
	}
	s.assertHas("pg1", acked)
	if order := s.probe.check(t); len(order) != 2 || order[0] != "pg1" || order[1] != np {
		t.Fatalf("writable nodes in order %v, want [pg1 %s]", order, np)
	}
	s.assertTerm(np, 2)
	if ev := s.events(np, fsm.EventStorageFailure); len(ev) != 1 {
		t.Errorf("%d storage_failure events at the end, want 1: %v", len(ev), ev)
	}
}
