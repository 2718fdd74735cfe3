package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/hasidecar/hasidecar/fsm"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// garbage is not a protobuf message: 0xff starts a field with an invalid
// wire type.
var garbage = []byte{0xff, 0xff, 0xff}

func initClusterLog(t *testing.T) *raft.Log {
	t.Helper()
	b, err := fsm.Encode(&pb.Command{Cmd: &pb.Command_InitCluster{InitCluster: &pb.InitCluster{ClusterName: "c1"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: 10, Term: 3, Type: raft.LogCommand, Data: b}
}

// TestApplyUndecodableStops: a committed entry that does not decode calls
// the fatal function once, with the index, the term, the leader and the
// decode error, and leaves the state (and its waiters) untouched.
func TestApplyUndecodableStops(t *testing.T) {
	cases := []struct {
		name       string
		leader     func() (raft.ServerAddress, raft.ServerID)
		wantLeader string
	}{
		{"leader known by id", func() (raft.ServerAddress, raft.ServerID) { return "10.0.0.2:7000", "pg2" }, "leader=pg2:"},
		{"leader known by address only", func() (raft.ServerAddress, raft.ServerID) { return "10.0.0.2:7000", "" }, "leader=10.0.0.2:7000:"},
		{"no leader known", func() (raft.ServerAddress, raft.ServerID) { return "", "" }, "leader=unknown:"},
		{"raft not started yet", nil, "leader=unknown:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRaftFSM(hclog.NewNullLogger())
			var msgs []string
			f.fatal = func(msg string, args ...any) { msgs = append(msgs, msg) }
			if tc.leader != nil {
				f.setLeaderFunc(tc.leader)
			}
			if res, ok := f.Apply(initClusterLog(t)).(fsm.Result); !ok || res.Err != nil {
				t.Fatalf("init cluster: %v", res)
			}
			before := f.State()
			changed := f.Changed()

			out := f.Apply(&raft.Log{Index: 11, Term: 3, Type: raft.LogCommand, Data: garbage})

			if len(msgs) != 1 {
				t.Fatalf("fatal called %d times, want once: %q", len(msgs), msgs)
			}
			for _, want := range []string{"index=11", "term=3", tc.wantLeader, "decode command", "must not diverge", "same hasidecar version"} {
				if !strings.Contains(msgs[0], want) {
					t.Errorf("fatal message lacks %q: %s", want, msgs[0])
				}
			}
			if res, ok := out.(fsm.Result); !ok || res.Err == nil {
				t.Errorf("Apply returned %v, want a Result with an error", out)
			}
			if after := f.State(); !proto.Equal(before, after) {
				t.Errorf("state changed:\n before %v\n  after %v", before, after)
			}
			if f.State().AppliedIndex != 10 {
				t.Errorf("applied index %d, want 10", f.State().AppliedIndex)
			}
			select {
			case <-changed:
				t.Errorf("waiters were woken for an entry that was not applied")
			default:
			}
		})
	}
}

// TestApplyUndecodableExits runs the default fatal function in a child
// process: exit code 70, the message on one log line, no Go stack trace.
func TestApplyUndecodableExits(t *testing.T) {
	if os.Getenv("HASIDECAR_TEST_FATAL_CHILD") == "1" {
		f := newRaftFSM(hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info}))
		f.setLeaderFunc(func() (raft.ServerAddress, raft.ServerID) { return "10.0.0.2:7000", "pg2" })
		f.Apply(&raft.Log{Index: 11, Term: 3, Type: raft.LogCommand, Data: garbage})
		fmt.Fprintln(os.Stderr, "Apply returned")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyUndecodableExits$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HASIDECAR_TEST_FATAL_CHILD=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitUndecodable {
		t.Fatalf("child: %v, want exit code %d; stderr:\n%s", err, exitUndecodable, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "[ERROR] cannot apply committed raft entry: index=11 term=3 leader=pg2: decode command: ") {
		t.Errorf("no error line naming the entry:\n%s", out)
	}
	for _, bad := range []string{"panic", "goroutine ", "Apply returned"} {
		if strings.Contains(out, bad) {
			t.Errorf("stderr contains %q:\n%s", bad, out)
		}
	}
}
