package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hasidecar/hasidecar/internal/guardcmd"
)

// TestGuardCommandBeside: hasidecar-guard is run when an executable file of
// that name is beside the sidecar's binary, else the binary's own pgguard.
func TestGuardCommandBeside(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(path string) error // the file beside, or nil
		small bool
	}{
		{name: "none beside", small: false},
		{name: "executable beside", plant: func(p string) error { return os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755) }, small: true},
		{name: "not executable", plant: func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) }, small: false},
		{name: "a directory", plant: func(p string) error { return os.Mkdir(p, 0o755) }, small: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "hasidecar")
			small := filepath.Join(dir, guardcmd.Binary)
			if tc.plant != nil {
				if err := tc.plant(small); err != nil {
					t.Fatal(err)
				}
			}
			prog, args := guardCommandBeside(self)
			switch {
			case tc.small && (prog != small || len(args) != 0):
				t.Fatalf("got %s %v, want %s with no verb", prog, args, small)
			case !tc.small && (prog != self || !slices.Equal(args, []string{"pgguard"})):
				t.Fatalf("got %s %v, want %s pgguard", prog, args, self)
			}
		})
	}
}
