package keeper

import (
	"fmt"
	"time"
)

// configureRecheck: configure writes (or compares) the managed files again
// after this long even when nothing it renders them from changed, so that
// a file edited or removed by hand is put back. In between, a round whose
// inputs are those of the last successful configure skips the rendering
// and the file reads: that was half an idle reconciler round's CPU.
const configureRecheck = 30 * time.Second

// confMemo is what the last successful configure was asked for (the
// reconciler only).
type confMemo struct {
	key string
	at  time.Time
}

// configureKey is everything configure renders and decides from: the
// managed settings, pg_hba, the recovery settings, the role and whether
// Postgres runs (fmt prints maps in key order).
func configureKey(settings map[string]string, hba any, conninfo, slot string, asStandby, running bool) string {
	return fmt.Sprintf("%v\x00%+v\x00%s\x00%s\x00%v\x00%v", settings, hba, conninfo, slot, asStandby, running)
}

// fresh reports whether key was configured less than configureRecheck ago.
func (m *confMemo) fresh(key string, now time.Time) bool {
	return m.key == key && !m.at.IsZero() && now.Sub(m.at) < configureRecheck
}
