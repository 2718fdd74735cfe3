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
