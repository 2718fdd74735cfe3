package node

import (
	"os/exec"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestExpandPlaceholders(t *testing.T) {
	e := &pb.Event{NodeId: 3, NodeName: "pg2", Type: "standby_promote", Ok: true, TimestampUnixMs: 0, Details: `it's "done"; rm -rf /`, Term: 7}
	vals := eventValues("lab", e)
	cases := []struct{ name, in, want string }{
		{"every placeholder", "%n %a %e %s %T %c", "'3' 'pg2' 'standby_promote' '1' '7' 'lab'"},
		{"percent sign", "100%% %e", "100% 'standby_promote'"},
		{"unknown placeholder kept", "%x %n", "%x '3'"},
		{"trailing percent", "end %", "end %"},
		{"details quoted", "%d", `'it'\''s "done"; rm -rf /'`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := expandPlaceholders(tc.in, vals); got != tc.want {
				t.Fatalf("expand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	// The quoting survives a real shell: the details come back verbatim.
	out, err := exec.Command("/bin/sh", "-c", expandPlaceholders("printf '%%s' %d", vals)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != e.Details {
		t.Fatalf("shell printed %q, want %q", out, e.Details)
	}
}
