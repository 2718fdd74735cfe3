package clusterconf

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/hasidecar/hasidecar/config"
	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

// TestApplyRefuses: every refusal names the key and says what to write,
// and leaves the settings as they were.
func TestApplyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		changes []*pb.ConfigChange
		want    string
	}{
		{"no change", nil, "no change given; write KEY=VALUE"},
		{"unknown key", set("lease", "4s"), "lease: not a cluster configuration key; see `hasidecar config show` for the keys"},
		{"unknown key, near one", set("timing.leese", "4s"), "timing.leese: not a cluster configuration key (did you mean timing.lease?); see `hasidecar config show` for the keys"},
		{"given twice", append(set("failover", "auto"), set("failover", "manual")...), "failover: given twice; keep one"},
		{"wrong type: failover", set("failover", "sometimes"), `failover: "sometimes" is not a failover mode; use auto or manual`},
		{"wrong type: synchronous", set("synchronous", "yes"), `synchronous: "yes" is not a synchronous mode; use off, on or strict`},
		{"synchronous_count zero", set("synchronous_count", "0"), "synchronous_count: 0 is out of range; use 1 to 64 (and at most the data nodes minus one)"},
		{"synchronous_count not a number", set("synchronous_count", "two"), `synchronous_count: "two" is not a whole number; use 1 or more`},
		{"wrong type: duration", set("timing.lease", "four"), `timing.lease: "four" is not a duration; write it with a unit, like "4s" or "500ms"`},
		{"lease too short", set("timing.lease", "500ms"), "timing.lease: 500ms is out of range; use 1s to 2m"},
		{"lease too long", set("timing.lease", "3m"), "timing.lease: 3m is out of range; use 1s to 2m"},
		{"lease finer than a millisecond", set("timing.lease", "1500001us"), "timing.lease: 1.500001s is finer than a millisecond; round it"},
		{"wrong type: integer", set("events.max_count", "ten"), `events.max_count: "ten" is not a whole number; use 10 to 1000000`},
		{"integer out of range", set("events.max_count", "5"), "events.max_count: 5 is out of range; use 10 to 1000000"},
		{"wrong type: size", set("maximum_lag_on_failover", "lots"), `maximum_lag_on_failover: "lots" is not a size; write a whole number with a unit B, kB, MB, GB or TB, like "16MB"`},
		{"size zero", set("maximum_lag_on_failover", "0"), "maximum_lag_on_failover: 0 is too small; use at least 1B (default 16MB)"},
		{"retention out of range", set("slot_retention", "1s"), "slot_retention: 1s is out of range; use 5s to 720h (or 0s for off)"},
		{"storage failure out of range", set("failover_on_storage_failure", "1s"), "failover_on_storage_failure: 1s is out of range; use 5s to 24h (or 0s for off)"},
		{"voters even", set("raft.max_voters", "4"), "raft.max_voters: 4 is even; use 3 or 5: an even number of voters tolerates no more lost voters than one fewer, and needs one more for every commit"},
		{"voters zero", set("raft.max_voters", "0"), "raft.max_voters: 0 is too small; use an odd number of at least 1: 3 or 5 (default 5) tolerate one or two lost voters"},
		{"voters not a number", set("raft.max_voters", "five"), `raft.max_voters: "five" is not a whole number; use an odd number like 3 or 5`},
		{"voter replacement too quick", set("raft.voter_replace_after", "1s"), "raft.voter_replace_after: 1s is out of range; use 5s to 24h"},
		{"managed GUC", set("postgresql.parameters.primary_conninfo", "host=x"), "postgresql.parameters.primary_conninfo: managed by hasidecar; remove it"},
		{"managed GUC with a node key instead", set("postgresql.parameters.port", "5433"), "postgresql.parameters.port: set postgres.port instead"},
		{"managed GUC: synchronous names", set("postgresql.parameters.synchronous_standby_names", "*"), "postgresql.parameters.synchronous_standby_names: managed by hasidecar (set synchronous: true for synchronous replication); remove it"},
		{"GUC name", set("postgresql.parameters.Work_Mem", "8MB"), `postgresql.parameters.Work_Mem: "Work_Mem" is not a Postgres parameter name; write it in lowercase letters, digits and '_', like work_mem`},
		{"GUC value with a line break", set("postgresql.parameters.work_mem", "8MB\nfsync = off"), "postgresql.parameters.work_mem: the value holds a line break; write it on one line"},
		{"hba not a list", set("postgresql.hba", "host all all 10.0.0.0/8 trust"), `postgresql.hba: "host all all 10.0.0.0/8 trust" is not a JSON list of pg_hba.conf lines; write it like ["host all app 10.0.0.0/24 scram-sha-256"]`},
		{"hba method", set("postgresql.hba", `["host all app 10.0.0.0/24 scram"]`), `postgresql.hba: line 1 "host all app 10.0.0.0/24 scram": "scram" is not an authentication method; use one of trust, reject, scram-sha-256, md5, password, gss, sspi, ident, peer, ldap, radius, cert, pam, bsd`},
		{"hba too few fields", set("postgresql.hba", `["host all app"]`), `postgresql.hba: line 1 "host all app": too few fields: a host line is TYPE DATABASE USER ADDRESS METHOD [OPTIONS]`},
		{"a bad change refuses the good ones with it", append(set("postgresql.parameters.work_mem", "8MB"), set("timing.lease", "0s")...), "timing.lease: 0s is out of range; use 1s to 2m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &pb.Settings{ConfigVersion: 3, LeaseMs: 4000, PostgresParameters: map[string]string{"work_mem": "4MB"}}
			before := proto.Clone(s)
			next, diffs, err := Apply(s, tc.changes)
			if err == nil {
				t.Fatalf("accepted: %v", diffs)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			if next != nil || diffs != nil {
				t.Errorf("a refusal returned settings %v and diffs %v", next, diffs)
			}
			if !proto.Equal(s, before) {
				t.Errorf("Apply changed its input: %v", s)
			}
		})
	}
}

func set(key, value string) []*pb.ConfigChange {
	return []*pb.ConfigChange{{Key: key, Value: value}}
}

func TestApplyAccepts(t *testing.T) {
	tests := []struct {
		name    string
		changes []*pb.ConfigChange
		check   func(*pb.Settings) bool
		diffs   []string
	}{
		{"GUC added", set("postgresql.parameters.work_mem", "8MB"),
			func(s *pb.Settings) bool { return s.PostgresParameters["work_mem"] == "8MB" },
			[]string{`postgresql.parameters.work_mem "4MB" → "8MB"`}},
		{"GUC new", set("postgresql.parameters.max_connections", "150"),
			func(s *pb.Settings) bool { return s.PostgresParameters["max_connections"] == "150" },
			[]string{`postgresql.parameters.max_connections unset → "150"`}},
		{"GUC removed", []*pb.ConfigChange{{Key: "postgresql.parameters.work_mem", Unset: true}},
			func(s *pb.Settings) bool { _, ok := s.PostgresParameters["work_mem"]; return !ok },
			[]string{`postgresql.parameters.work_mem "4MB" → unset`}},
		{"custom module GUC", set("postgresql.parameters.auto_explain.log_min_duration", "1s"),
			func(s *pb.Settings) bool { return s.PostgresParameters["auto_explain.log_min_duration"] == "1s" }, nil},
		{"lease", set("timing.lease", "2s"), func(s *pb.Settings) bool { return s.LeaseMs == 2000 },
			[]string{`timing.lease "4s" → "2s"`}},
		{"same value: no diff", set("timing.lease", "4s"), func(s *pb.Settings) bool { return s.LeaseMs == 4000 }, []string{}},
		{"failover manual", set("failover", "manual"), func(s *pb.Settings) bool { return s.FailoverMode == pb.FailoverMode_FAILOVER_MODE_MANUAL }, nil},
		{"synchronous on", set("synchronous", "on"), func(s *pb.Settings) bool { return s.Synchronous }, []string{`synchronous "off" → "on"`}},
		{"synchronous strict", set("synchronous", "strict"), func(s *pb.Settings) bool { return s.Synchronous && s.SynchronousStrict }, []string{`synchronous "off" → "strict"`}},
		{"synchronous_count", set("synchronous_count", "2"), func(s *pb.Settings) bool { return s.SynchronousCount == 2 }, []string{`synchronous_count "1" → "2"`}},
		{"retention off", set("slot_retention", "0s"), func(s *pb.Settings) bool { return s.SlotRetentionMs == 0 }, nil},
		{"hba", set("postgresql.hba", `["host all app 10.0.0.0/24 scram-sha-256", "local all app peer"]`),
			func(s *pb.Settings) bool { return len(s.PostgresHba) == 2 }, nil},
		{"voters", set("raft.max_voters", "3"), func(s *pb.Settings) bool { return s.MaxVoters == 3 }, []string{`raft.max_voters "5" → "3"`}},
		{"voter replacement", set("raft.voter_replace_after", "1m"), func(s *pb.Settings) bool { return s.VoterReplaceAfterMs == 60000 }, []string{`raft.voter_replace_after "30s" → "1m"`}},
		{"size", set("maximum_lag_on_failover", "1GB"), func(s *pb.Settings) bool { return s.MaximumLagOnFailover == 1<<30 }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &pb.Settings{ConfigVersion: 3, LeaseMs: 4000, PostgresParameters: map[string]string{"work_mem": "4MB"}}
			before := proto.Clone(s)
			next, diffs, err := Apply(s, tc.changes)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(next) {
				t.Errorf("not applied: %v", next)
			}
			if next.ConfigVersion != 3 {
				t.Errorf("Apply moved the version to %d (the FSM does)", next.ConfigVersion)
			}
			if !proto.Equal(s, before) {
				t.Errorf("Apply changed its input: %v", s)
			}
			if tc.diffs != nil {
				got := []string{}
				for _, d := range diffs {
					got = append(got, d.String())
				}
				if len(got) != len(tc.diffs) || (len(got) > 0 && got[0] != tc.diffs[0]) {
					t.Errorf("diffs %q, want %q", got, tc.diffs)
				}
			}
		})
	}
}

// TestManagedRefusedEverywhere: every managed setting is refused as a
// cluster parameter with the same reason the node file's validation gives.
func TestManagedRefusedEverywhere(t *testing.T) {
	for name, why := range config.ManagedParameters {
		_, _, err := Apply(&pb.Settings{}, set(ParamPrefix+name, "x"))
		if want := ParamPrefix + name + ": " + why; err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", name, err, want)
		}
	}
}

// TestDetailsRoundTrip: config history reads back what the event wrote.
func TestDetailsRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		version := rapid.Uint64().Draw(t, "version")
		n := rapid.IntRange(1, 4).Draw(t, "n")
		var diffs []Diff
		for i := 0; i < n; i++ {
			d := Diff{Key: rapid.StringMatching(`[a-z_.]{1,20}`).Draw(t, "key"), Had: rapid.Bool().Draw(t, "had"), Has: rapid.Bool().Draw(t, "has")}
			if d.Had {
				d.Old = rapid.String().Draw(t, "old")
			}
			if d.Has {
				d.New = rapid.String().Draw(t, "new")
			}
			diffs = append(diffs, d)
		}
		text := Details(version, diffs)
		v, back, err := ParseDetails(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if v != version || len(back) != len(diffs) {
			t.Fatalf("%q read back as version %d, %v", text, v, back)
		}
		for i := range diffs {
			if back[i] != diffs[i] {
				t.Fatalf("%q: diff %d read back as %+v, want %+v", text, i, back[i], diffs[i])
			}
		}
	})
}

func TestDrift(t *testing.T) {
	c := &config.Config{Synchronous: true, Failover: config.FailoverAutomatic}
	c.Timing.Lease = config.Duration(6e9)
	s := &pb.Settings{LeaseMs: 4000, Synchronous: true}
	got := Drift(c, map[string]bool{"timing.lease": true, "synchronous": true}, s)
	if len(got) != 1 || got[0].Key != "timing.lease" || got[0].Local != "6s" || got[0].Cluster != "4s" {
		t.Errorf("drift %v, want timing.lease 6s vs 4s only", got)
	}
	if got := Drift(c, nil, s); len(got) != 0 {
		t.Errorf("a key the file does not give drifted: %v", got)
	}
}

// TestREADMEListsEveryKey: the README's cluster key reference names every
// row of the table (adding a key means documenting it).
func TestREADMEListsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "### Cluster keys")
	if !ok {
		t.Fatal("README.md has no \"### Cluster keys\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for _, k := range Keys {
		name := k.Name
		if k.Family() {
			name += "NAME"
		}
		if !strings.Contains(section, "| `"+name+"` |") {
			t.Errorf("README.md's cluster keys do not list %s", name)
		}
	}
}
