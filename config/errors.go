package config

import (
	"sort"
	"strconv"
	"strings"
)

// Issue is one problem found in a configuration.
type Issue struct {
	// Line is the line in the file the problem is on, 0 when not known (a key
	// that is missing, or a Config built in code).
	Line int
	// Key is the dotted path of the key concerned ("timing.lease"), "" when
	// the problem concerns the whole file.
	Key string
	// Text says what is wrong and what to do about it, without the line.
	Text string
}

// String renders the issue without the "config <source>: " prefix.
func (i Issue) String() string {
	if i.Line > 0 {
		return "line " + strconv.Itoa(i.Line) + ": " + i.Text
	}
	return i.Text
}

// Error lists every problem found in a configuration, one per line, each as
//
//	config <source>: line N: key "a.b": <problem>; <what to fix>
//
// ("line N: " only when the line is known).
type Error struct {
	// Source names the file ("" for a Config built in code).
	Source string
	Issues []Issue
}

func (e *Error) Error() string {
	prefix := "config: "
	if e.Source != "" {
		prefix = "config " + e.Source + ": "
	}
	var b strings.Builder
	for i, is := range e.Issues {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(prefix)
		b.WriteString(is.String())
	}
	return b.String()
}

// newError returns an *Error for source with the issues ordered by line
// (issues without a line last, in the order found), or nil when there are none.
func newError(source string, issues []Issue) error {
	if len(issues) == 0 {
		return nil
	}
	sorted := append([]Issue(nil), issues...)
	sort.SliceStable(sorted, func(a, b int) bool {
		la, lb := sorted[a].Line, sorted[b].Line
		if la == 0 || lb == 0 {
			return la != 0 && lb == 0
		}
		return la < lb
	})
	return &Error{Source: source, Issues: sorted}
}

// fileError is an error about the whole file, before any key is known.
func fileError(source string, line int, text string) error {
	return &Error{Source: source, Issues: []Issue{{Line: line, Text: text}}}
}

// keyText starts an issue's text with the key it concerns.
func keyText(key, text string) string {
	return "key " + strconv.Quote(key) + ": " + text
}

// quoteValue renders a value found in the file for a message: quoted and
// shortened.
func quoteValue(s string) string {
	const max = 200
	r := []rune(s)
	if len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
