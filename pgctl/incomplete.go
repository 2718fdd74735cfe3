package pgctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// An initdb, pg_basebackup or pg_rewind that is interrupted (the sidecar
// killed, the context cancelled) can leave a data directory that looks valid
// but is not: a half-written clone, a half-rewound cluster. Before each of
// them a marker file DataDir+".incomplete" (outside the data directory,
// naming the operation) is written; it is removed when the operation
// succeeded or failed without touching the directory. While it exists,
// InspectDataDir reports DataDirIncomplete and Start refuses.

func (c *Controller) markerPath() string { return c.opts.DataDir + ".incomplete" }

// markIncomplete records that op is about to change the data directory.
func (c *Controller) markIncomplete(op string) error {
	text := op + " started " + time.Now().UTC().Format(time.RFC3339) + "\n"
	if err := writeFileAtomic(c.markerPath(), []byte(text), 0o644, nil); err != nil {
		return fmt.Errorf("writing marker %s: %w", c.markerPath(), err)
	}
	return nil
}

func (c *Controller) clearIncomplete() {
	if err := os.Remove(c.markerPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("removing marker", "file", c.markerPath(), "error", err)
	}
}

// incompleteOp returns the operation named by the marker ("" if none).
func (c *Controller) incompleteOp() string {
	b, err := os.ReadFile(c.markerPath())
	if err != nil {
		return ""
	}
	op, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	if op == "" {
		op = "unknown"
	}
	return op
}

// discardIncomplete clears the remains of an interrupted operation so that
// InitDB / BaseBackup can start afresh: an interrupted initdb or clone is
// emptied; a half-rewound cluster is moved aside (nothing is deleted).
func (c *Controller) discardIncomplete() error {
	op := c.incompleteOp()
	if op == "pg_rewind" {
		sa, err := c.moveAside()
		if err != nil {
			return err
		}
		c.log.Warn("moved the remains of an interrupted pg_rewind aside", "to", sa.Path, "removed_older", sa.Removed)
	} else {
		c.log.Warn("clearing the remains of an interrupted operation", "operation", op, "data_dir", c.opts.DataDir)
		c.emptyDataDir()
	}
	c.clearIncomplete()
	return nil
}
