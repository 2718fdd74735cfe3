package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hasidecar/hasidecar/clusterconf"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func configFixture() *pb.ConfigShowResponse {
	return &pb.ConfigShowResponse{
		AnsweredBy: "pg1",
		Settings: &pb.Settings{
			ConfigVersion: 4, FailoverMode: pb.FailoverMode_FAILOVER_MODE_AUTOMATIC, LeaseMs: 4000, EventMaxCount: 1000,
			MaximumLagOnFailover: 16 << 20, SlotRetentionMs: 1800000,
			PostgresParameters: map[string]string{"work_mem": "8MB", "max_connections": "150"},
			PostgresHba:        []string{"host all app 10.0.0.0/24 scram-sha-256"},
		},
		Nodes: []*pb.NodeConfig{
			{Name: "pg1", PendingRestart: []string{"max_connections"}},
			{Name: "pg2", LocalParameters: map[string]string{"work_mem": "32MB", "shared_buffers": "1GB"}, PendingRestart: []string{"max_connections"},
				Drift: []*pb.ConfigDrift{{Key: "timing.lease", YamlKey: "timing.lease", Local: "6s", Cluster: "4s"}}},
			{Name: "pg3"},
			{Name: "pg4", Error: "did not answer: connection refused"},
		},
	}
}

func TestRenderConfig(t *testing.T) {
	t.Run("show", func(t *testing.T) {
		var buf bytes.Buffer
		renderConfigShow(&buf, configFixture())
		golden(t, "config_show.golden", buf.Bytes())
		b, err := json.MarshalIndent(toConfigShowJSON(configFixture()), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "config_show.json.golden", append(b, '\n'))
	})
	t.Run("show_new_cluster", func(t *testing.T) {
		var buf bytes.Buffer
		renderConfigShow(&buf, &pb.ConfigShowResponse{AnsweredBy: "pg1", Settings: &pb.Settings{}})
		golden(t, "config_show_new_cluster.golden", buf.Bytes())
	})
	for _, tc := range []struct {
		name   string
		resp   *pb.ConfigSetResponse
		dryRun bool
	}{
		{"set", &pb.ConfigSetResponse{Version: 5, Diff: []string{`postgresql.parameters.work_mem "4MB" → "8MB"`, `timing.lease "4s" → "3s"`}}, false},
		{"set_restart", &pb.ConfigSetResponse{Version: 6, Diff: []string{`postgresql.parameters.max_connections unset → "150"`}, Restart: []string{"max_connections"}}, false},
		{"set_dry_run", &pb.ConfigSetResponse{Version: 5, Diff: []string{`failover "auto" → "manual"`}}, true},
		{"set_nothing", &pb.ConfigSetResponse{Version: 5}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			renderConfigSet(&buf, tc.resp, tc.dryRun)
			golden(t, "config_"+tc.name+".golden", buf.Bytes())
		})
	}
	t.Run("history", func(t *testing.T) {
		evs := []*pb.Event{
			{Type: "config_changed", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 5, 0, 0),
				Details: clusterconf.Details(2, []clusterconf.Diff{{Key: "postgresql.parameters.max_connections", New: "150", Has: true}, {Key: "timing.lease", Old: "4s", New: "3s", Had: true, Has: true}})},
			{Type: "config_changed", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 10, 1, 0, 0),
				Details: clusterconf.Details(1, []clusterconf.Diff{{Key: "postgresql.parameters.work_mem", Old: "4MB", Had: true}})},
			{Type: "config_changed", Ok: true, TimestampUnixMs: fxMillis(2024, 5, 1, 9, 0, 0, 0), Details: "garbled"},
		}
		var buf bytes.Buffer
		renderConfigHistory(&buf, toConfigHistoryJSON(evs))
		golden(t, "config_history.golden", buf.Bytes())
		b, err := json.MarshalIndent(toConfigHistoryJSON(evs), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "config_history.json.golden", append(b, '\n'))
	})
}

func TestParseConfigChanges(t *testing.T) {
	for _, tc := range []struct {
		args, unset []string
		want        string // error, or "" for success
	}{
		{nil, nil, "no change given; write KEY=VALUE (see `hasidecar config show` for the keys)"},
		{[]string{"work_mem"}, nil, `"work_mem" is not KEY=VALUE; write it like postgresql.parameters.work_mem=8MB (or --unset KEY)`},
		{[]string{"=8MB"}, nil, `"=8MB" is not KEY=VALUE; write it like postgresql.parameters.work_mem=8MB (or --unset KEY)`},
		{[]string{"postgresql.parameters.search_path="}, nil, ""},
		{[]string{"a=b=c"}, []string{"timing.lease"}, ""},
	} {
		got, err := parseConfigChanges(tc.args, tc.unset)
		if tc.want != "" {
			if err == nil || err.Error() != tc.want {
				t.Errorf("%q: got %v, want %s", tc.args, err, tc.want)
			}
			continue
		}
		if err != nil || len(got) != len(tc.args)+len(tc.unset) {
			t.Errorf("%q %q: %v %v", tc.args, tc.unset, got, err)
		}
	}
	got, _ := parseConfigChanges([]string{"a=b=c"}, []string{"timing.lease"})
	if got[0].Key != "a" || got[0].Value != "b=c" || !got[1].Unset || got[1].Key != "timing.lease" {
		t.Errorf("parsed %v", got)
	}
}

// TestConfigEditPieces: what `config edit` shows reads back as the same
// values (saving unchanged changes nothing); an edit through $EDITOR
// becomes exactly the changes made; bad files are refused.
func TestConfigEditPieces(t *testing.T) {
	s := configFixture().Settings
	text := renderEditable(s)
	golden(t, "config_edit.golden", []byte(text))
	vals, err := parseEditable(text)
	if err != nil {
		t.Fatal(err)
	}
	if ch := clusterconf.Changes(s, vals); len(ch) != 0 {
		t.Fatalf("an unchanged file gives changes: %v", ch)
	}

	// An editor that raises work_mem, removes max_connections, adds a GUC.
	script := filepath.Join(t.TempDir(), "ed.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsed -i -e 's/\"8MB\"/\"16MB\"/' -e '/max_connections/d' \"$1\"\necho 'postgresql.parameters.jit: off' >> \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VISUAL", "")
	t.Setenv("EDITOR", script)
	edited, err := editText(text)
	if err != nil {
		t.Fatal(err)
	}
	vals, err = parseEditable(edited)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range clusterconf.Changes(s, vals) {
		got = append(got, fmt.Sprintf("%s=%s unset=%t", c.Key, c.Value, c.Unset))
	}
	want := []string{"postgresql.parameters.jit=off unset=false", "postgresql.parameters.work_mem=16MB unset=false", "postgresql.parameters.max_connections= unset=true"}
	if !slices.Equal(got, want) {
		t.Errorf("changes %q, want %q", got, want)
	}

	for _, tc := range []struct{ text, want string }{
		{"", "the edited configuration is empty"},
		{"- a\n- b\n", "line 1: the edited configuration must be KEY: VALUE lines"},
		{"failover: auto\nfailover: manual\n", "line 2: failover given twice; keep one"},
		{"postgresql.hba:\n  - host all all 10.0.0.0/8 trust\n", "line 2: postgresql.hba: give the value on one line, quoted"},
	} {
		if _, err := parseEditable(tc.text); err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %s", tc.text, err, tc.want)
		}
	}

	var out bytes.Buffer
	if !confirm(strings.NewReader("yes\n"), &out, "apply? ") || confirm(strings.NewReader("\n"), &out, "apply? ") || confirm(strings.NewReader("nope\n"), &out, "apply? ") {
		t.Error("confirm: only y or yes is a yes")
	}
}
