package config

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// String renders the duration the way the file writes it: "1s", "500ms",
// "2m", "1h30m", "720h".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalYAML writes the duration as a string such as "1s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration written with a unit ("4s", "500ms", "2m",
// "1h30m"); a bare number other than 0 is refused, since its unit would be a
// guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a duration such as \"4s\", got "+nodeKind(n))
	}
	v, msg := parseDuration(n.Value)
	if msg != "" {
		return typeError(n, msg)
	}
	*d = Duration(v)
	return nil
}

// parseDuration parses a non-negative duration; on failure it returns the
// problem and what to write instead.
func parseDuration(s string) (time.Duration, string) {
	t := strings.TrimSpace(s)
	if t == "0" {
		return 0, ""
	}
	d, err := time.ParseDuration(t)
	if days, ok := strings.CutSuffix(t, "d"); ok && err != nil {
		// Whole days, for retentions: "7d".
		if n, perr := strconv.ParseUint(days, 10, 16); perr == nil {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil {
		return 0, fmt.Sprintf("%s is not a duration; write it with a unit, like \"4s\" or \"500ms\"", quoteValue(s))
	}
	if d < 0 {
		return 0, fmt.Sprintf("%s is negative; write a duration of 0 or more, like \"4s\" or \"500ms\"", quoteValue(s))
	}
	return d, ""
}

// Byte-size units, 1024-based like Postgres.
var sizeUnits = []struct {
	name string
	mult uint64
}{
	{"TB", 1 << 40},
	{"GB", 1 << 30},
	{"MB", 1 << 20},
	{"kB", 1 << 10},
	{"B", 1},
}

var sizeRE = regexp.MustCompile(`^([0-9]+)\s*([A-Za-z]*)$`)

// String renders the size with the largest unit that divides it: "16MB",
// "1GB", "512kB", "1000B".
func (b ByteSize) String() string {
	v := uint64(b)
	if v == 0 {
		return "0B"
	}
	for _, u := range sizeUnits {
		if v%u.mult == 0 {
			return strconv.FormatUint(v/u.mult, 10) + u.name
		}
	}
	return strconv.FormatUint(v, 10) + "B" // not reached: B divides everything
}

// MarshalYAML writes the size as a string such as "16MB".
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML reads a size: an integer (bytes) or a string with a unit B,
// kB, MB, GB or TB (1024-based, any letter case), like "16MB".
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "expected a size such as \"16MB\", got "+nodeKind(n))
	}
	v, msg := parseByteSize(n.Value)
	if msg != "" {
		return typeError(n, msg)
	}
	*b = ByteSize(v)
	return nil
}

// parseByteSize parses a size; on failure it returns the problem and what to
// write instead.
func parseByteSize(s string) (uint64, string) {
	bad := fmt.Sprintf("%s is not a size; write a whole number with a unit B, kB, MB, GB or TB, like \"16MB\"", quoteValue(s))
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, bad
	}
	mult := uint64(1)
	if m[2] != "" {
		mult = 0
		for _, u := range sizeUnits {
			if strings.EqualFold(m[2], u.name) {
				mult = u.mult
			}
		}
		if mult == 0 {
			return 0, bad
		}
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	hi, v := bits.Mul64(n, mult)
	if err != nil || hi != 0 || v > math.MaxInt64 {
		return 0, fmt.Sprintf("%s is too large; use at most 8388607TB", quoteValue(s))
	}
	return v, ""
}

// typeError reports a bad value the way yaml.v3 does, so decoding goes on
// and collects every such problem.
func typeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// nodeKind names what a YAML node holds, for messages.
func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return quoteValue(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// ParseByteSize reads a size as the config does (1048576, "16MB", "1GB",
// "512kB"): for values outside a config file, such as the HTTP API's
// ?lag=.
func ParseByteSize(s string) (uint64, error) {
	v, msg := parseByteSize(s)
	if msg != "" {
		return 0, errors.New(msg)
	}
	return v, nil
}

// ParseDuration reads a duration as the config does ("4s", "500ms", "7d",
// "0"): for values outside a config file, such as `config set`.
func ParseDuration(s string) (time.Duration, error) {
	v, msg := parseDuration(s)
	if msg != "" {
		return 0, errors.New(msg)
	}
	return v, nil
}
