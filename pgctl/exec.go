package pgctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// runSpec describes one short-lived subprocess (initdb, pg_basebackup, ...).
type runSpec struct {
	name     string   // binary in BinDir
	args     []string // never a password
	passfile string   // PGPASSFILE
	dir      string   // working directory (default: the OS user's home)
	quiet    bool     // log output at trace instead of debug/info
	progress bool     // stderr carries \r progress lines: log them at debug
	onStderr func(line string)
}

type runResult struct {
	stdout string
	stderr *tailBuffer
}

// tailLines is how many lines of stderr / the server log an error carries.
const tailLines = 10

// run executes a binary as the OS user, streaming its output line by line to
// the logger. The child gets a parent-death signal (SIGKILL) and its own
// process group, which is killed when ctx ends. A failure's error includes
// the last lines of stderr.
func (c *Controller) run(ctx context.Context, s runSpec) (*runResult, error) {
	log := c.log.Named(s.name)
	cmd := exec.CommandContext(ctx, c.bin(s.name), s.args...)
	cmd.Env = c.env(s.passfile)
	cmd.Dir = s.dir
	if cmd.Dir == "" {
		cmd.Dir = c.homeDir()
	}
	cmd.SysProcAttr = c.sysProcAttr(syscall.SIGKILL)
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	outLevel, errLevel := hclog.Debug, hclog.Info
	if s.quiet {
		outLevel, errLevel = hclog.Trace, hclog.Trace
	}
	var stdout bytes.Buffer
	res := &runResult{stderr: newTailBuffer(tailLines)}
	ow := newLineWriter(func(line string, _ bool) {
		stdout.WriteString(line + "\n")
		log.Log(outLevel, redact(line))
	})
	ew := newLineWriter(func(line string, cr bool) {
		if cr || s.progress && progressRE.MatchString(line) {
			log.Debug(redact(line))
			return
		}
		res.stderr.add(line)
		if s.onStderr != nil {
			s.onStderr(line)
		}
		log.Log(errLevel, redact(line))
	})
	cmd.Stdout, cmd.Stderr = ow, ew
	log.Debug("running", "cmd", redact(c.bin(s.name)+" "+strings.Join(s.args, " ")), "as", c.id.name)

	err := runLocked(cmd)
	ow.flush()
	ew.flush()
	res.stdout = stdout.String()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return res, fmt.Errorf("%s: %w%s", s.name, err, res.stderr.suffix())
	}
	return res, nil
}

var progressRE = regexp.MustCompile(`^\s*\d+/\d+ kB \(\d+%\)`)

// runLocked starts cmd from a goroutine locked to its OS thread and waits
// for it there: Pdeathsig is delivered when the thread that forked exits, so
// that thread must outlive the child.
func runLocked(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread is discarded when this goroutine
		// returns, which is after the child is gone.
		if err := cmd.Start(); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Wait()
	}()
	return <-errc
}

// sysProcAttr: own process group, parent-death signal, and the OS user's
// credentials when we are root.
func (c *Controller) sysProcAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if c.id.asRoot {
		a.Credential = &syscall.Credential{Uid: uint32(c.id.uid), Gid: uint32(c.id.gid), Groups: c.id.groups}
	}
	return a
}

// env is a minimal environment: nothing of the caller's (which may hold
// PGPASSWORD, PGHOST, ...) leaks into Postgres binaries.
func (c *Controller) env(passfile string) []string {
	env := []string{
		"PATH=" + c.opts.BinDir + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + c.homeDir(),
		"USER=" + c.id.name,
		"LOGNAME=" + c.id.name,
		"LC_ALL=C",
		"LANG=C",
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	if passfile != "" {
		env = append(env, "PGPASSFILE="+passfile)
	}
	return env
}

// homeDir is a directory the OS user owns: its home when that exists,
// otherwise the data directory's parent.
func (c *Controller) homeDir() string {
	if c.id.home != "" {
		if st, err := os.Stat(c.id.home); err == nil && st.IsDir() && ownedBy(st, c.id.uid) {
			return c.id.home
		}
	}
	if d := filepath.Dir(c.opts.DataDir); isDir(d) {
		return d
	}
	return "/"
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func ownedBy(st os.FileInfo, uid int) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(s.Uid) == uid
}

func killGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// chown gives path to the OS user (no-op unless we are root).
func (c *Controller) chown(path string) error {
	if !c.id.asRoot {
		return nil
	}
	if err := os.Lchown(path, c.id.uid, c.id.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, c.id.name, err)
	}
	return nil
}

// passwordRE finds password=... in conninfo strings (key=value and URI query).
var passwordRE = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:\\.|[^'])*'|[^\s&]+)`)
var uriPasswordRE = regexp.MustCompile(`(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)`)

// redact hides passwords in a line that may echo a conninfo.
func redact(s string) string {
	s = passwordRE.ReplaceAllString(s, "${1}********")
	return uriPasswordRE.ReplaceAllString(s, "${1}********${3}")
}

// hasPassword reports whether a conninfo carries a password.
func hasPassword(conninfo string) bool {
	return redact(conninfo) != conninfo
}

// lineWriter splits a byte stream into lines (on \n or \r) for a callback;
// cr tells whether the line ended with \r (a progress update).
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(line string, cr bool)
}

func newLineWriter(fn func(string, bool)) *lineWriter { return &lineWriter{fn: fn} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(w.buf[:i]), " ")
		cr := w.buf[i] == '\r'
		w.buf = w.buf[i+1:]
		if line != "" {
			w.fn(line, cr)
		}
	}
	if len(w.buf) > 64<<10 { // a runaway line: emit it anyway
		w.fn(string(w.buf), false)
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.fn(string(w.buf), false)
		w.buf = nil
	}
}

// tailBuffer keeps the last n lines.
type tailBuffer struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{n: n} }

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// suffix formats the tail for an error message ("" when empty).
func (t *tailBuffer) suffix() string {
	s := t.String()
	if s == "" {
		return ""
	}
	return "; stderr:\n" + redact(s)
}

// fileTail returns the last n lines of path from byte offset from on.
func fileTail(path string, from int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const maxRead = 64 << 10
	start := from
	if st.Size()-start > maxRead {
		start = st.Size() - maxRead
	}
	if start < 0 {
		start = 0
	}
	buf := make([]byte, st.Size()-start)
	k, _ := f.ReadAt(buf, start)
	buf = buf[:k]
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return redact(strings.Join(lines, "\n"))
}
