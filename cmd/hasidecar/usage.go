package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// exitUsage is the exit code of a command line that names an unknown verb
// or flag, or has wrong arguments (as getopt-style tools do): nothing ran.
const exitUsage = 2

// usageError is a bad command line: exit 2, with the message.
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// strictGroups makes every command that has subcommands refuse an unknown
// verb (exit 2, with the nearest verb suggested) instead of printing its
// help and exiting 0, and every bad flag exit 2; with no verb it prints its
// help.
func strictGroups(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%v (see %s --help)", err, c.CommandPath())
	})
	if cmd.HasSubCommands() {
		cmd.SuggestionsMinimumDistance = 2
		cmd.Args = unknownVerb
		if cmd.Run == nil && cmd.RunE == nil {
			cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		}
	}
	for _, sub := range cmd.Commands() {
		strictGroups(sub)
	}
}

func unknownVerb(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return usageError("unknown command %q for %q%s", args[0], cmd.CommandPath(), hint)
}
