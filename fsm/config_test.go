package fsm

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func setConfig(version uint64, kv ...string) *pb.Command {
	c := &pb.SetConfig{Version: version}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Changes = append(c.Changes, &pb.ConfigChange{Key: kv[i], Value: kv[i+1]})
	}
	return &pb.Command{Cmd: &pb.Command_SetConfig{SetConfig: c}}
}

func configEvents(st *pb.ClusterState) []*pb.Event {
	var out []*pb.Event
	for _, e := range st.Events {
		if e.Type == EventConfigChanged {
			out = append(out, e)
		}
	}
	return out
}

func TestSetConfig(t *testing.T) {
	h := threeNodes(t)
	h.ok(setConfig(0, "postgresql.parameters.work_mem", "8MB", "timing.lease", "2s"))
	st := h.m.State()
	if got := st.Settings.ConfigVersion; got != 1 {
		t.Fatalf("version %d after the first change, want 1", got)
	}
	if st.Settings.PostgresParameters["work_mem"] != "8MB" || st.Settings.LeaseMs != 2000 {
		t.Fatalf("not applied: %v", st.Settings)
	}
	ev := configEvents(st)
	if len(ev) != 1 {
		t.Fatalf("%d config_changed events, want 1", len(ev))
	}
	if want := `version 1: postgresql.parameters.work_mem unset → "8MB"; timing.lease "4s" → "2s"`; ev[0].Details != want || !ev[0].Ok {
		t.Errorf("event %q ok=%t, want %q", ev[0].Details, ev[0].Ok, want)
	}

	// The same values again change nothing: no version, no event.
	h.ok(setConfig(1, "postgresql.parameters.work_mem", "8MB"))
	if st := h.m.State(); st.Settings.ConfigVersion != 1 || len(configEvents(st)) != 1 {
		t.Errorf("a no-op change moved the version to %d or recorded an event", st.Settings.ConfigVersion)
	}
}

// TestSetConfigRefused: a stale version or a bad change is refused whole,
// with nothing changed (not even an event).
func TestSetConfigRefused(t *testing.T) {
	tests := []struct {
		name string
		cmd  *pb.Command
		code Code
		want string
	}{
		{"stale version", setConfig(0, "postgresql.parameters.work_mem", "16MB"), CodeConflict,
			"conflict: the configuration is at version 1, not 0: it changed since it was read; read it again and redo the change"},
		{"future version", setConfig(7, "postgresql.parameters.work_mem", "16MB"), CodeConflict,
			"conflict: the configuration is at version 1, not 7: it changed since it was read; read it again and redo the change"},
		{"unknown key", setConfig(1, "postgresql.parameters.work_mem", "16MB", "bogus", "1"), CodeInvalidCommand,
			"invalid_command: bogus: not a cluster configuration key; see `hasidecar config show` for the keys"},
		{"managed GUC", setConfig(1, "postgresql.parameters.primary_conninfo", "host=evil"), CodeInvalidCommand,
			"invalid_command: postgresql.parameters.primary_conninfo: managed by hasidecar; remove it"},
		{"out of range", setConfig(1, "timing.lease", "10m"), CodeInvalidCommand,
			"invalid_command: timing.lease: 10m is out of range; use 1s to 2m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := threeNodes(t)
			h.ok(setConfig(0, "postgresql.parameters.work_mem", "8MB"))
			before := h.m.State()
			r := h.apply(tc.cmd)
			var fe *Error
			if !errors.As(r.Err, &fe) || fe.Code != tc.code {
				t.Fatalf("got %v, want a %s refusal", r.Err, tc.code)
			}
			if r.Err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", r.Err, tc.want)
			}
			if after := h.m.State(); !proto.Equal(after.Settings, before.Settings) || len(after.Events) != len(before.Events) {
				t.Errorf("a refused SetConfig changed the state:\nbefore %v\nafter  %v", before.Settings, after.Settings)
			}
		})
	}
}

// TestSetConfigDeterministic: two machines applying the same commands end
// in the same state, byte for byte.
func TestSetConfigDeterministic(t *testing.T) {
	cmds := []*pb.Command{
		setConfig(0, "postgresql.parameters.work_mem", "8MB", "postgresql.parameters.max_connections", "150", "postgresql.parameters.a_b", "1"),
		setConfig(0, "timing.lease", "3s"), // stale: refused on both
		setConfig(1, "postgresql.hba", `["host all app 10.0.0.0/24 scram-sha-256"]`, "events.max_count", "50"),
	}
	var states [][]byte
	for range 2 {
		h := threeNodes(t)
		for _, c := range cmds {
			h.apply(proto.Clone(c).(*pb.Command))
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(h.m.State())
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, b)
	}
	if string(states[0]) != string(states[1]) {
		t.Error("the same SetConfig commands gave two states")
	}
}

// TestSetSettingsMovesConfigVersion: the older SetSettings (pause aside)
// also changes configuration keys, so it moves the version too: a
// `config set` read before it is refused.
func TestSetSettingsMovesConfigVersion(t *testing.T) {
	h := threeNodes(t)
	sync := true
	h.ok(&pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Synchronous: &sync}}})
	if v := h.m.State().Settings.ConfigVersion; v != 1 {
		t.Fatalf("version %d after SetSettings, want 1", v)
	}
	paused := true
	h.ok(&pb.Command{Cmd: &pb.Command_SetSettings{SetSettings: &pb.SetSettings{Paused: &paused}}})
	if v := h.m.State().Settings.ConfigVersion; v != 1 {
		t.Errorf("pause moved the configuration version to %d", v)
	}
	if r := h.apply(setConfig(0, "synchronous", "off")); !errors.Is(r.Err, ErrConflict) {
		t.Errorf("a SetConfig at the version before SetSettings: %v, want a conflict", r.Err)
	}
}
