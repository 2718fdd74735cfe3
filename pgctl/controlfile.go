package pgctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The binary layout of global/pg_control in PostgreSQL 15
// (src/include/catalog/pg_control.h, ControlFileData, pg_control_version
// 1300, little-endian x86-64): only the fields read here. The offsets were
// checked on a pg_control written by Debian's PostgreSQL 15 initdb
// (testdata/pg_control, compared with its pg_controldata output).
const (
	controlVersionPG15   = 1300
	controlOffVersion    = 8   // uint32 pg_control_version
	controlOffState      = 16  // int32 DBState
	controlOffCheckpoint = 32  // uint64 checkPoint (XLogRecPtr)
	controlOffCRC        = 288 // uint32 crc (CRC-32C of the bytes before it)
)

// dbStates are DBState's values (pg_control.h) in pg_controldata's words,
// so that ControlFile.State compares with ControlData.State.
var dbStates = []string{"starting up", StateShutDown, StateShutDownInRecovery, "shutting down",
	"in crash recovery", "in archive recovery", "in production"}

// ControlFile is what ReadControlFile reads from pg_control itself.
type ControlFile struct {
	SystemIdentifier uint64
	State            string // as pg_controldata words it
	CheckpointLSN    uint64
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// ErrControlFileCRC: pg_control's checksum does not match its bytes (a
// read that raced a write, or a damaged file): read it again.
var ErrControlFileCRC = errors.New("pg_control: checksum mismatch")

// DecodeControlFile decodes the fields of ControlFile from pg_control's
// bytes; it refuses anything but PostgreSQL 15's layout with a valid
// checksum.
func DecodeControlFile(b []byte) (*ControlFile, error) {
	if len(b) < controlOffCRC+4 {
		return nil, fmt.Errorf("pg_control: %d bytes, want at least %d", len(b), controlOffCRC+4)
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[controlOffVersion:]); v != controlVersionPG15 {
		return nil, fmt.Errorf("pg_control: version %d, this build reads %d (PostgreSQL 15)", v, controlVersionPG15)
	}
	if crc32.Checksum(b[:controlOffCRC], crc32c) != le.Uint32(b[controlOffCRC:]) {
		return nil, ErrControlFileCRC
	}
	st := int32(le.Uint32(b[controlOffState:]))
	if st < 0 || int(st) >= len(dbStates) {
		return nil, fmt.Errorf("pg_control: unknown cluster state %d", st)
	}
	return &ControlFile{SystemIdentifier: le.Uint64(b), State: dbStates[st], CheckpointLSN: le.Uint64(b[controlOffCheckpoint:])}, nil
}

// ReadControlFile reads DataDir/global/pg_control directly: no process to
// start, so it can be asked every few milliseconds while Postgres shuts
// down (the switchover reports the shutdown checkpoint as soon as it is
// written). It works whether Postgres runs or not.
func (c *Controller) ReadControlFile() (*ControlFile, error) {
	b, err := os.ReadFile(filepath.Join(c.opts.DataDir, "global", "pg_control"))
	if err != nil {
		return nil, fmt.Errorf("read pg_control: %w", err)
	}
	return DecodeControlFile(b)
}
