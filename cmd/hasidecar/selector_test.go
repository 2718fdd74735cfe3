package main

import (
	"strings"
	"testing"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func TestNodeSelector(t *testing.T) {
	view := &pb.ShowResponse{Nodes: []*pb.NodeView{{Id: 1, Name: "pg1"}, {Id: 2, Name: "pg2"}, {Id: 7, Name: "witness"}}}
	cases := []struct {
		in       string
		id       uint32
		name     string
		parseErr string
		resolve  string // "" ok, else an error substring
	}{
		{in: "pg2", id: 2, name: "pg2"},
		{in: "2", id: 2, name: "pg2"},
		{in: "7", id: 7, name: "witness"},
		{in: "witness", id: 7, name: "witness"},
		{in: "0", parseErr: "ids start at 1"},
		{in: "pg9", resolve: "no such member; the members are [pg1 (1) pg2 (2) witness (7)]"},
		{in: "9", resolve: "--node 9: no such member"},
	}
	for _, tc := range cases {
		var s nodeSelector
		err := s.Set(tc.in)
		if tc.parseErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.parseErr) {
				t.Errorf("Set(%q) = %v, want %q", tc.in, err, tc.parseErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Set(%q): %v", tc.in, err)
			continue
		}
		id, name, err := s.resolve(view)
		if tc.resolve != "" {
			if err == nil || !strings.Contains(err.Error(), tc.resolve) {
				t.Errorf("resolve(%q) = %v, want %q", tc.in, err, tc.resolve)
			}
			continue
		}
		if err != nil || id != tc.id || name != tc.name {
			t.Errorf("resolve(%q) = %d %q %v, want %d %q", tc.in, id, name, err, tc.id, tc.name)
		}
	}
}

func TestNewestFirst(t *testing.T) {
	at := func(e *pb.Event) int64 { return e.TimestampUnixMs }
	ids := func(evs []*pb.Event) []uint64 {
		var out []uint64
		for _, e := range evs {
			out = append(out, e.Id)
		}
		return out
	}
	evs := []*pb.Event{{Id: 1, TimestampUnixMs: 100}, {Id: 2, TimestampUnixMs: 300}, {Id: 3, TimestampUnixMs: 200}, {Id: 4, TimestampUnixMs: 300}}
	newestFirst(evs, at, false)
	if got := ids(evs); got[0] != 2 || got[1] != 4 || got[2] != 3 || got[3] != 1 {
		t.Errorf("newest first: %v, want [2 4 3 1]", got)
	}
	newestFirst(evs, at, true)
	if got := ids(evs); got[0] != 1 || got[1] != 3 || got[2] != 2 || got[3] != 4 {
		t.Errorf("reverse: %v, want [1 3 2 4]", got)
	}
	if timeText(0) == timeJSON(0) || timeJSON(1500) != "1970-01-01T00:00:01.500Z" || timeJSON(1860) >= timeJSON(1864) {
		t.Errorf("timeText %q, timeJSON %q", timeText(0), timeJSON(1500))
	}
}
