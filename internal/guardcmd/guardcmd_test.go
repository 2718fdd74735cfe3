package guardcmd

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestRunRefuses: what the guard refuses before it guards anything, with a
// message naming what is wrong.
func TestRunRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error
		help bool
	}{
		{args: nil, want: "neither a postmaster pid nor a data directory"},
		{args: []string{"--postmaster", "12", "extra"}, want: `unexpected arguments ["extra"]`},
		{args: []string{"--postmaster", "twelve"}, want: "invalid value"},
		{args: []string{"--nope"}, want: "flag provided but not defined"},
		{args: []string{"--help"}, help: true},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), Binary, tc.args, strings.NewReader(""), &out)
		switch {
		case tc.help:
			if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), Usage) {
				t.Errorf("%v: %v, usage %q; want flag.ErrHelp and the usage", tc.args, err, out.String())
			}
		case err == nil || !strings.Contains(err.Error(), tc.want):
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
