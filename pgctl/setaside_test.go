package pgctl

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestRemoveDataDirKeepsOneCopy: setting a data directory aside deletes the
// older set-aside copies and nothing else next to it.
func TestRemoveDataDirKeepsOneCopy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dirs, files []string // next to the data directory, before
		wantRemoved []string
		wantLeft    []string // what else must still be there
	}{
		{name: "first copy"},
		{
			name:        "older copies deleted, oldest first",
			dirs:        []string{"data.old-200", "data.old-100", "data.old-200-1", "data.old-99"},
			wantRemoved: []string{"data.old-99", "data.old-100", "data.old-200", "data.old-200-1"},
		},
		{
			name:     "look-alikes left alone",
			dirs:     []string{"data.older", "data.old-x", "data.old-1-a", "other.old-1", "data2.old-1"},
			files:    []string{"data.old-5", "data.pg_control.before-rewind"},
			wantLeft: []string{"data.older", "data.old-x", "data.old-1-a", "other.old-1", "data2.old-1", "data.old-5", "data.pg_control.before-rewind"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			data := filepath.Join(base, "data")
			for _, d := range append([]string{"data"}, tc.dirs...) {
				if err := os.MkdirAll(filepath.Join(base, d, "global"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(base, f), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c := &Controller{opts: Options{DataDir: data}, log: hclog.NewNullLogger()}
			sa, err := c.RemoveDataDir(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, r := range tc.wantRemoved {
				want = append(want, filepath.Join(base, r))
			}
			if !slices.Equal(sa.Removed, want) {
				t.Errorf("removed %v, want %v", sa.Removed, want)
			}
			copies, err := SetAsideCopies(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(copies) != 1 || copies[0] != sa.Path || !isDir(filepath.Join(sa.Path, "global")) {
				t.Errorf("set-aside copies afterwards %v, want only %s holding the data directory", copies, sa.Path)
			}
			if _, err := os.Lstat(data); !os.IsNotExist(err) {
				t.Errorf("the data directory is still there: %v", err)
			}
			for _, l := range tc.wantLeft {
				if _, err := os.Lstat(filepath.Join(base, l)); err != nil {
					t.Errorf("%s should be left alone: %v", l, err)
				}
			}
		})
	}
}

func TestRemoveDataDirMissing(t *testing.T) {
	c := &Controller{opts: Options{DataDir: filepath.Join(t.TempDir(), "data")}, log: hclog.NewNullLogger()}
	sa, err := c.RemoveDataDir(context.Background())
	if err != nil || sa.Path != "" || len(sa.Removed) != 0 {
		t.Fatalf("RemoveDataDir without a data directory = %+v, %v", sa, err)
	}
}
