package pgctl

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procState returns the state letter of a /proc/<pid>/stat line.
func procState(stat string) (byte, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0, false
	}
	return stat[i+2], true
}

// procPPID returns the parent pid of a /proc/<pid>/stat line.
func procPPID(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// Descendants lists every process below pid (children, grandchildren, ...);
// the lab freezes a whole host with it.
func Descendants(pid int) []int { return descendants(pid) }

// descendants lists every process below pid (children, grandchildren, ...).
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pp, ok := procPPID(string(b)); ok {
			kids[pp] = append(kids[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, k := range kids[p] {
			out = append(out, k)
			queue = append(queue, k)
		}
	}
	return out
}

// KillTree freezes pid (so it forks nothing more), then SIGKILLs its
// descendants, pid itself and its process group. Postgres backends each
// run in a session of their own, so killing the postmaster's process group
// alone would leave them running. The lab uses it to simulate a host's
// death.
func KillTree(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for _, d := range descendants(pid) {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// ForeignPostmaster returns the pid of a live postmaster on DataDir that
// this Controller did not start (0 when there is none).
func (c *Controller) ForeignPostmaster() int {
	if pid, alive := c.postmasterPID(); alive {
		return pid
	}
	return 0
}

// postmasterPID reads DataDir/postmaster.pid and reports whether that pid
// is a live postgres process other than our own child.
func (c *Controller) postmasterPID() (int, bool) {
	pid, alive := readPostmasterPID(c.opts.DataDir)
	if ch := c.current(); alive && ch != nil && ch.pid == pid && !ch.exited() {
		return pid, false
	}
	return pid, alive
}

// PostmasterOn is the pid of the live postmaster running on dataDir, from
// its postmaster.pid, and whether there is one: a live process named
// postgres whose working directory (the postmaster chdirs into its data
// directory) is dataDir, so that a stale file naming a reused pid is not
// taken for it.
func PostmasterOn(dataDir string) (int, bool) {
	pid, alive := readPostmasterPID(dataDir)
	if !alive {
		return 0, false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return 0, false
	}
	want, err := filepath.EvalSymlinks(dataDir)
	if err != nil {
		want = dataDir
	}
	if filepath.Clean(cwd) != filepath.Clean(want) {
		return 0, false
	}
	return pid, true
}

// readPostmasterPID: the pid in dataDir/postmaster.pid and whether it is a
// live postgres process.
func readPostmasterPID(dataDir string) (int, bool) {
	b, err := os.ReadFile(dataDir + "/postmaster.pid")
	if err != nil {
		return 0, false
	}
	line, _, _ := cutLine(string(b))
	pid, err := strconv.Atoi(line)
	if err != nil || pid <= 0 {
		return 0, false
	}
	if !processAlive(pid) {
		return pid, false
	}
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
		name := string(trimNL(comm))
		if name != "postgres" && name != "postmaster" {
			return pid, false
		}
	}
	return pid, true
}

func cutLine(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// processAlive: the pid exists and is not a zombie.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	if st, ok := procState(string(stat)); ok && (st == 'Z' || st == 'X') {
		return false
	}
	return true
}

func waitGone(pid int, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		if !processAlive(pid) {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
