package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestParseScheduleTime: RFC 3339 with a zone and +DURATION are absolute
// times in the future; anything else, a past time and a non-positive delay
// are refused with what to write instead.
func TestParseScheduleTime(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"2026-12-02T18:30:00Z", now.Add(30 * time.Minute), ""},
		{"2026-12-02T19:30:00+01:00", now.Add(30 * time.Minute), ""},
		{" +10m ", now.Add(10 * time.Minute), ""},
		{"+1h30m", now.Add(90 * time.Minute), ""},
		{"+0s", time.Time{}, "positive"},
		{"+-5m", time.Time{}, "positive"},
		{"+soon", time.Time{}, "positive"},
		{"2026-12-02T17:59:59Z", time.Time{}, "in the past"},
		{"2026-12-02T18:00:00Z", time.Time{}, "in the past"},
		{"2026-12-02 18:30", time.Time{}, "RFC 3339"},
		{"2026-12-02T18:30:00", time.Time{}, "RFC 3339"},
		{"", time.Time{}, "RFC 3339"},
	} {
		got, err := parseScheduleTime(tc.in, now)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && !got.Equal(tc.want):
			t.Errorf("%q: %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestRenderScheduled: cluster show names a pending and a running scheduled
// operation (text: one line each, with how to cancel; JSON: scheduled and
// running with kind, target, RFC 3339 times and who asked).
func TestRenderScheduled(t *testing.T) {
	at := time.Date(2026, 12, 2, 18, 30, 0, 0, time.UTC)
	op := &pb.ScheduledOperation{Id: 42, Kind: pb.ScheduledKind_SCHEDULED_KIND_SWITCHOVER, TargetId: 2, TargetName: "node2",
		AtUnixMs: at.UnixMilli(), RequestedAtUnixMs: at.Add(-time.Hour).UnixMilli(), RequestedBy: `"operator" (operator)`}
	run := &pb.ScheduledOperation{Id: 7, Kind: pb.ScheduledKind_SCHEDULED_KIND_RESTART, Pending: true, AtUnixMs: at.UnixMilli(), StartedAtUnixMs: at.UnixMilli()}
	resp := &pb.ShowResponse{Cluster: "main", Nodes: []*pb.NodeView{fxPrimaryView(1, "node1", 1)}, Scheduled: op, Running: run}
	var buf bytes.Buffer
	renderShow(&buf, resp)
	for _, want := range []string{
		"Scheduled: switchover to node2 at 2026-12-02T18:30:00Z (id 42), asked 2026-12-02T17:30:00Z by \"operator\" (operator); cancel with `hasidecar switchover --cancel`",
		"Running (scheduled): rolling restart (pending only) at 2026-12-02T18:30:00Z (id 7), started 2026-12-02T18:30:00Z",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("cluster show lacks %q:\n%s", want, buf.String())
		}
	}
	b, err := json.Marshal(toShowJSON(resp))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scheduled, Running map[string]any
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Scheduled["kind"] != "switchover" || doc.Scheduled["target"] != "node2" || doc.Scheduled["at"] != "2026-12-02T18:30:00Z" ||
		doc.Scheduled["id"] != float64(42) || doc.Scheduled["requested_by"] != `"operator" (operator)` {
		t.Errorf("scheduled: %v", doc.Scheduled)
	}
	if doc.Running["kind"] != "restart" || doc.Running["target"] != "" || doc.Running["pending"] != true {
		t.Errorf("running: %v", doc.Running)
	}
	if b, _ := json.Marshal(toShowJSON(&pb.ShowResponse{})); strings.Contains(string(b), "scheduled") {
		t.Errorf("an empty schedule is in the JSON: %s", b)
	}
}
