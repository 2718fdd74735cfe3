package pgctl

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseLSN parses a pg_lsn text ("16/B374D848") into a 64-bit position.
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("invalid LSN %q (want X/Y in hex)", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: %w", s, err)
	}
	return h<<32 | l, nil
}

// FormatLSN renders an LSN the way Postgres does ("16/B374D848").
func FormatLSN(lsn uint64) string {
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

// parseTimelineFromWALFile reads the timeline from a WAL file name
// (its first 8 hex digits).
func parseTimelineFromWALFile(name string) (uint32, error) {
	if len(name) < 8 {
		return 0, fmt.Errorf("invalid WAL file name %q", name)
	}
	n, err := strconv.ParseUint(name[:8], 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid WAL file name %q: %w", name, err)
	}
	return uint32(n), nil
}
