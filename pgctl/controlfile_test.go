package pgctl

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"strings"
	"testing"
)

// TestDecodeControlFile: a pg_control written by PostgreSQL 15's initdb
// decodes to what pg_controldata printed for it; a flipped byte, another
// version or a short file are refused.
func TestDecodeControlFile(t *testing.T) {
	b, err := os.ReadFile("testdata/pg_control")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("testdata/pg_control.controldata.txt")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseControlData(string(text))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeControlFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.SystemIdentifier != want.SystemIdentifier || got.State != want.State || got.CheckpointLSN != want.CheckpointLSN {
		t.Fatalf("decoded %+v, pg_controldata says sysid %d state %q checkpoint %s", got, want.SystemIdentifier, want.State, FormatLSN(want.CheckpointLSN))
	}

	flipped := append([]byte(nil), b...)
	flipped[controlOffCheckpoint] ^= 1
	if _, err := DecodeControlFile(flipped); !errors.Is(err, ErrControlFileCRC) {
		t.Fatalf("a flipped byte: %v, want the checksum refusal", err)
	}
	other := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(other[controlOffVersion:], 1700)
	binary.LittleEndian.PutUint32(other[controlOffCRC:], crc32.Checksum(other[:controlOffCRC], crc32c))
	if _, err := DecodeControlFile(other); err == nil || !strings.Contains(err.Error(), "version 1700") {
		t.Fatalf("another version: %v", err)
	}
	if _, err := DecodeControlFile(b[:100]); err == nil {
		t.Fatal("a short file decoded")
	}
	// Every state pg_controldata can print, with a valid checksum.
	for i, name := range dbStates {
		s := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(s[controlOffState:], uint32(i))
		binary.LittleEndian.PutUint32(s[controlOffCRC:], crc32.Checksum(s[:controlOffCRC], crc32c))
		if d, err := DecodeControlFile(s); err != nil || d.State != name {
			t.Fatalf("state %d: %+v %v, want %q", i, d, err, name)
		}
	}
}

// FuzzDecodeControlFile: any bytes decode or are refused without a panic;
// what decodes carries one of the known states and a valid checksum.
func FuzzDecodeControlFile(f *testing.F) {
	b, err := os.ReadFile("testdata/pg_control")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:controlOffCRC+4])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := DecodeControlFile(in)
		if err != nil {
			return
		}
		if crc32.Checksum(in[:controlOffCRC], crc32c) != binary.LittleEndian.Uint32(in[controlOffCRC:]) {
			t.Fatal("decoded with a bad checksum")
		}
		known := false
		for _, s := range dbStates {
			known = known || s == d.State
		}
		if !known {
			t.Fatalf("unknown state %q", d.State)
		}
	})
}
