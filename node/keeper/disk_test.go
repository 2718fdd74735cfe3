package keeper

import (
	"testing"

	"github.com/hasidecar/hasidecar/fsm"
	"github.com/hasidecar/hasidecar/pgctl"
)

func TestDiskFullReason(t *testing.T) {
	const mb = 1 << 20
	th := uint64(64 * mb)
	fs := func(free, total uint64) pgctl.FSSpace { return pgctl.FSSpace{Free: free, Total: total} }
	for _, tc := range []struct {
		name     string
		ds       pgctl.DiskSpace
		writeErr string
		want     string
	}{
		{"plenty free", pgctl.DiskSpace{Data: fs(10_000*mb, 20_000*mb)}, "", ""},
		{"exactly the threshold is not full", pgctl.DiskSpace{Data: fs(th, 200*mb)}, "", ""},
		{"one byte below", pgctl.DiskSpace{Data: fs(th-1, 200*mb)}, "", "67108863 bytes free on the data directory's filesystem (threshold 67108864)"},
		{"nothing free", pgctl.DiskSpace{Data: fs(0, 200*mb)}, "", "0 bytes free on the data directory's filesystem (threshold 67108864)"},
		{"not measured", pgctl.DiskSpace{}, "", ""},
		{"separate pg_wal full", pgctl.DiskSpace{Data: fs(1000*mb, 2000*mb), WAL: fs(mb, 100*mb), SeparateWAL: true}, "", "1048576 bytes free on pg_wal's filesystem (threshold 67108864)"},
		{"pg_wal figures ignored unless separate", pgctl.DiskSpace{Data: fs(1000*mb, 2000*mb), WAL: fs(mb, 100*mb)}, "", ""},
		{"data reported before pg_wal", pgctl.DiskSpace{Data: fs(2*mb, 100*mb), WAL: fs(mb, 100*mb), SeparateWAL: true}, "", "2097152 bytes free on the data directory's filesystem (threshold 67108864)"},
		{"failed write with space left", pgctl.DiskSpace{Data: fs(1000*mb, 2000*mb)}, "ERROR: could not extend file (SQLSTATE 53100)", "a write failed for lack of space: ERROR: could not extend file (SQLSTATE 53100)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := diskFullReason(tc.ds, th, tc.writeErr); got != tc.want {
				t.Errorf("diskFullReason = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDiskTransition(t *testing.T) {
	for _, tc := range []struct {
		reported, full bool
		want           string
	}{
		{false, false, ""},
		{false, true, fsm.EventDiskFull},
		{true, true, ""},
		{true, false, fsm.EventDiskOK},
	} {
		if got := diskTransition(tc.reported, tc.full); got != tc.want {
			t.Errorf("diskTransition(reported %v, full %v) = %q, want %q", tc.reported, tc.full, got, tc.want)
		}
	}
}
