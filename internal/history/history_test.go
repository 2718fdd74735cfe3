package history

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/hasidecar/hasidecar/proto/hasidecar/v1"
)

func sample(at time.Time, lsn uint64) *pb.NodeReport {
	return &pb.NodeReport{NodeId: 2, Name: "pg2", AtUnixMs: at.UnixMilli(), Postgres: &pb.PostgresStatus{Running: true, InRecovery: true, ReplayLsn: lsn}}
}

func lsns(reps []*pb.NodeReport) []uint64 {
	var out []uint64
	for _, r := range reps {
		out = append(out, r.Postgres.GetReplayLsn())
	}
	return out
}

func TestAppendReadPrune(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "history"))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	// 6 samples over three hours: two per hour.
	for i := 0; i < 6; i++ {
		if err := s.Append(sample(base.Add(time.Duration(i)*30*time.Minute), uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	hours, _ := s.segments()
	if len(hours) != 3 {
		t.Fatalf("%d segments, want 3 (one per hour)", len(hours))
	}
	all, err := s.Read(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := lsns(all); len(got) != 6 || got[0] != 6 || got[5] != 1 {
		t.Fatalf("Read all: %v, want 6..1 newest first", got)
	}
	last2, _ := s.Read(time.Time{}, 2)
	if got := lsns(last2); len(got) != 2 || got[0] != 6 || got[1] != 5 {
		t.Fatalf("Read limit 2: %v, want [6 5]", got)
	}
	since, _ := s.Read(base.Add(75*time.Minute), 0) // from 11:15: samples at 11:30, 12:00, 12:30
	if got := lsns(since); len(got) != 3 || got[2] != 4 {
		t.Fatalf("Read since 11:15: %v, want [6 5 4]", got)
	}
	// Prune before 10:45: removes 10:00 and 10:30 (the whole first
	// segment); before 11:15 then cuts through the second segment.
	if n, err := s.Prune(base.Add(45 * time.Minute)); err != nil || n != 2 {
		t.Fatalf("Prune 10:45: %d, %v; want 2", n, err)
	}
	if n, err := s.Prune(base.Add(75 * time.Minute)); err != nil || n != 1 {
		t.Fatalf("Prune 11:15: %d, %v; want 1", n, err)
	}
	all, _ = s.Read(time.Time{}, 0)
	if got := lsns(all); len(got) != 3 || got[0] != 6 || got[2] != 4 {
		t.Fatalf("after pruning: %v, want [6 5 4]", got)
	}
	if hours, _ := s.segments(); len(hours) != 2 {
		t.Fatalf("%d segments after pruning, want 2", len(hours))
	}
}

func TestTornAndCorrupt(t *testing.T) {
	var buf bytes.Buffer
	for i := 0; i < 3; i++ {
		rec, err := encodeRecord(sample(time.UnixMilli(int64(i)), uint64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(rec)
	}
	full := buf.Bytes()
	reps, err := Decode(bytes.NewReader(full[:len(full)-3])) // a torn last record
	if err != nil || len(reps) != 2 {
		t.Fatalf("torn tail: %d samples, %v; want 2 and no error", len(reps), err)
	}
	bad := bytes.Clone(full)
	bad[5] ^= 0xff // inside the first record's body
	reps, err = Decode(bytes.NewReader(bad))
	if !errors.Is(err, ErrCorrupt) || len(reps) != 0 {
		t.Fatalf("corrupt first record: %d samples, %v; want 0 and ErrCorrupt", len(reps), err)
	}
	// A corrupt segment on disk: Read returns what precedes the damage and
	// says which segment it was.
	dir := t.TempDir()
	s, _ := Open(dir)
	at := time.UnixMilli(0)
	_ = os.WriteFile(s.segmentPath(segmentHour(at)), append(bytes.Clone(full[:len(full)/3*2]), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 0o600)
	if _, err := s.Read(time.Time{}, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a corrupt segment: %v, want ErrCorrupt", err)
	}
}

// FuzzDecode: any bytes decode without a panic, to samples that re-encode
// to a prefix of the input's valid records.
func FuzzDecode(f *testing.F) {
	rec, _ := encodeRecord(sample(time.UnixMilli(1), 7))
	f.Add(rec)
	f.Add(append(bytes.Clone(rec), rec[:4]...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		reps, _ := Decode(bytes.NewReader(b))
		var again []byte
		for _, r := range reps {
			e, err := encodeRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			again = append(again, e...)
		}
		if len(again) > len(b) {
			t.Fatalf("decoded %d samples that encode to %d bytes, more than the %d read", len(reps), len(again), len(b))
		}
	})
}
