package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// runCLI runs the root command in-process and returns its error and what it
// printed on os.Stdout and on cobra's output.
func runCLI(t *testing.T, args ...string) (stdout, cobraOut string, err error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stdout = captureStdout(t, func() { err = root.ExecuteContext(ctx) })
	return stdout, out.String(), err
}

func TestCLIErrors(t *testing.T) {
	noSidecar := "no sidecar to ask"
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
		// every string must appear in the error
		want []string
		// the error must not contain these
		wantNot []string
		// the exit code it carries (0: a plain error, which exits 1)
		code int
	}{
		{
			name: "cluster show, sidecar not running",
			args: func(t *testing.T) []string {
				return []string{"cluster", "show", "--addr", closedAddr(t), "--rpc-timeout", "2s"}
			},
			want:    []string{"cannot reach the sidecar at 127.0.0.1:", "is `hasidecar agent` running there?"},
			wantNot: []string{"goroutine", "panic", ".go:"},
		},
		{
			name: "cluster show --json, sidecar not running",
			args: func(t *testing.T) []string {
				return []string{"cluster", "show", "--json", "--addr", closedAddr(t), "--rpc-timeout", "2s"}
			},
			want: []string{"cannot reach the sidecar at 127.0.0.1:"},
		},
		{
			name: "cluster events, sidecar not running",
			args: func(t *testing.T) []string {
				return []string{"cluster", "events", "--addr", closedAddr(t), "--rpc-timeout", "2s"}
			},
			want: []string{"cannot reach the sidecar at 127.0.0.1:"},
		},
		{
			name: "cluster show, no target",
			args: func(t *testing.T) []string { return []string{"cluster", "show"} },
			want: []string{noSidecar, "-c FILE", "--addr HOST:PORT", "HASIDECAR_ADDR"},
		},
		{
			name: "node status, no target",
			args: func(t *testing.T) []string { return []string{"node", "status"} },
			want: []string{noSidecar},
		},
		{
			name: "cluster show -c missing file",
			args: func(t *testing.T) []string {
				return []string{"cluster", "show", "-c", filepath.Join(t.TempDir(), "missing.yaml")}
			},
			want: []string{"missing.yaml"},
		},
		{
			name: "cluster events --limit -1",
			args: func(t *testing.T) []string {
				return []string{"cluster", "events", "--limit", "-1", "--addr", closedAddr(t)}
			},
			want: []string{"--limit", "-1"},
			// refused before dialling
			wantNot: []string{"cannot reach"},
		},
		{
			name:    "node remove without --id or --name",
			args:    func(t *testing.T) []string { return []string{"node", "remove", "--addr", closedAddr(t)} },
			want:    []string{"--id", "--name"},
			wantNot: []string{"cannot reach"},
		},
		{
			name:    "failover without --to",
			args:    func(t *testing.T) []string { return []string{"failover", "--addr", closedAddr(t)} },
			want:    []string{"--to NAME"},
			wantNot: []string{"cannot reach"},
		},
		{
			name:    "switchover without --to",
			args:    func(t *testing.T) []string { return []string{"switchover", "--addr", closedAddr(t)} },
			want:    []string{"--to NAME"},
			wantNot: []string{"cannot reach"},
		},
		{
			name: "agent with a missing config file",
			args: func(t *testing.T) []string { return []string{"agent", "-c", "/nonexistent.yaml"} },
			want: []string{"/nonexistent.yaml"},
		},
		{
			name: "unexpected argument",
			args: func(t *testing.T) []string { return []string{"cluster", "show", "extra"} },
			want: []string{"extra"},
		},
		{
			name: "unknown flag",
			args: func(t *testing.T) []string { return []string{"cluster", "show", "--no-such-flag"} },
			want: []string{"--no-such-flag", "hasidecar cluster show --help"}, code: exitUsage,
		},
		{
			name: "unknown verb",
			args: func(t *testing.T) []string { return []string{"cluster", "shw"} },
			want: []string{`unknown command "shw" for "hasidecar cluster" (did you mean "show"?)`}, code: exitUsage,
		},
		{
			name: "unknown verb, two letters swapped",
			args: func(t *testing.T) []string { return []string{"node", "stauts"} },
			want: []string{`unknown command "stauts" for "hasidecar node" (did you mean "status"?)`}, code: exitUsage,
		},
		{
			name: "unknown lab verb",
			args: func(t *testing.T) []string { return []string{"lab", "dwn"} },
			want: []string{`unknown command "dwn" for "hasidecar lab" (did you mean "down"?)`}, code: exitUsage,
		},
		{
			name: "unknown top-level verb",
			args: func(t *testing.T) []string { return []string{"clutser", "show"} },
			want: []string{`unknown command "clutser" for "hasidecar" (did you mean "cluster"?)`}, code: exitUsage,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HASIDECAR_ADDR", "")
			if _, err := os.Stat(defaultConfigPath); err == nil {
				t.Skipf("%s exists on this machine: the CLI would use it", defaultConfigPath)
			}
			stdout, _, err := runCLI(t, tc.args(t)...)
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", stdout)
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(msg, w) {
					t.Errorf("error %q mentions %q", msg, w)
				}
			}
			var ee *exitError
			switch {
			case tc.code == 0 && errors.As(err, &ee):
				t.Errorf("a connection or argument error became exit code %d", ee.code)
			case tc.code != 0 && (!errors.As(err, &ee) || ee.code != tc.code):
				t.Errorf("want exit code %d, got %v", tc.code, err)
			}
			if stdout != "" {
				t.Errorf("printed on stdout before failing:\n%s", stdout)
			}
		})
	}
}

// node check reports an unreachable sidecar as UNKNOWN with the monitoring
// exit code 3 and prints nothing through the error.
func TestCLINodeCheckUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantOut  []string
		wantCode int
	}{
		{name: "text", args: nil, wantOut: []string{`Node "(unknown)": UNKNOWN`, "sidecar: UNKNOWN", "cannot reach the sidecar"}, wantCode: checkUnknown},
		{name: "json", args: []string{"--json"}, wantOut: []string{`"status": "UNKNOWN"`, `"exit_code": 3`}, wantCode: checkUnknown},
		{name: "node view", args: []string{"--node", "node2"}, wantOut: []string{"UNKNOWN", "cannot reach the sidecar"}, wantCode: checkUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"node", "check", "--addr", closedAddr(t), "--rpc-timeout", "2s"}, tc.args...)
			stdout, _, err := runCLI(t, args...)
			var ee *exitError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v, want an exit code", err)
			}
			if ee.code != tc.wantCode || ee.msg != "" {
				t.Errorf("exit %d %q, want %d and no message", ee.code, ee.msg, tc.wantCode)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not mention %q:\n%s", w, stdout)
				}
			}
		})
	}
}

func TestCLIVersion(t *testing.T) {
	stdout, _, err := runCLI(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout, "hasidecar ") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version printed %q, want one line starting with \"hasidecar \"", stdout)
	}
}

func TestCLIHelp(t *testing.T) {
	_, out, err := runCLI(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"agent", "cluster", "node", "switchover", "failover", "pause", "unpause", "lab", "version"} {
		if !strings.Contains(out, "  "+w+" ") {
			t.Errorf("help does not list %q:\n%s", w, out)
		}
	}
}

// The real binary: a failed call exits 1 with one line on stderr, and node
// check keeps its monitoring exit code.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	bin := filepath.Join(t.TempDir(), "hasidecar")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string // prefix of the only stderr line; "" for no stderr
		wantStdout string // substring
	}{
		{name: "cluster show, sidecar not running", args: []string{"cluster", "show", "--addr", "127.0.0.1:1"},
			wantCode: 1, wantStderr: "hasidecar: cannot reach the sidecar at 127.0.0.1:1"},
		{name: "usage error", args: []string{"failover"},
			wantCode: 1, wantStderr: "hasidecar: say which standby to promote"},
		{name: "node check, sidecar not running", args: []string{"node", "check", "--addr", "127.0.0.1:1"},
			wantCode: 3, wantStdout: "UNKNOWN"},
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "hasidecar "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Env = append(os.Environ(), "HASIDECAR_ADDR=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var xe *exec.ExitError
			if errors.As(err, &xe) {
				code = xe.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, &stdout, &stderr)
			}
			errText := stderr.String()
			if tc.wantStderr == "" {
				if errText != "" {
					t.Errorf("stderr: %q, want nothing", errText)
				}
			} else {
				if strings.Count(errText, "\n") != 1 || !strings.HasSuffix(errText, "\n") {
					t.Errorf("stderr is not exactly one line: %q", errText)
				}
				if !strings.HasPrefix(errText, tc.wantStderr) {
					t.Errorf("stderr %q does not start with %q", errText, tc.wantStderr)
				}
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q does not contain %q", &stdout, tc.wantStdout)
			}
		})
	}
}
