package config

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{"seconds", "4s", 4 * time.Second, ""},
		{"milliseconds", "500ms", 500 * time.Millisecond, ""},
		{"compound", "1h30m", 90 * time.Minute, ""},
		{"zero without unit", "0", 0, ""},
		{"spaces", " 2m ", 2 * time.Minute, ""},
		{"bare number", "4", 0, `"4" is not a duration; write it with a unit, like "4s" or "500ms"`},
		{"word", "fast", 0, `"fast" is not a duration; write it with a unit, like "4s" or "500ms"`},
		{"days", "7d", 7 * 24 * time.Hour, ""},
		{"fractional days", "1.5d", 0, `"1.5d" is not a duration; write it with a unit, like "4s" or "500ms"`},
		{"negative", "-1s", 0, `"-1s" is negative; write a duration of 0 or more, like "4s" or "500ms"`},
		{"empty", "", 0, `"" is not a duration; write it with a unit, like "4s" or "500ms"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := parseDuration(tc.in)
			if msg != tc.wantErr || got != tc.want {
				t.Errorf("parseDuration(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.wantErr)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{time.Second, "1s"},
		{500 * time.Millisecond, "500ms"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{720 * time.Hour, "720h"},
		{time.Hour + time.Second, "1h0m1s"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := Duration(tc.in).String(); got != tc.want {
				t.Errorf("Duration(%v).String() = %q, want %q", tc.in, got, tc.want)
			}
			back, msg := parseDuration(Duration(tc.in).String())
			if msg != "" || back != tc.in {
				t.Errorf("parseDuration(String()) = %v, %q", back, msg)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	bad := func(s string) string {
		return `"` + s + `" is not a size; write a whole number with a unit B, kB, MB, GB or TB, like "16MB"`
	}
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr string
	}{
		{"bytes", "1000", 1000, ""},
		{"B", "1000B", 1000, ""},
		{"kB", "512kB", 512 << 10, ""},
		{"MB", "16MB", 16 << 20, ""},
		{"lowercase", "16mb", 16 << 20, ""},
		{"uppercase", "1GB", 1 << 30, ""},
		{"space before unit", "2 TB", 2 << 40, ""},
		{"zero", "0", 0, ""},
		{"IEC unit", "16MiB", 0, bad("16MiB")},
		{"fraction", "1.5GB", 0, bad("1.5GB")},
		{"negative", "-1MB", 0, bad("-1MB")},
		{"word", "big", 0, bad("big")},
		{"empty", "", 0, bad("")},
		{"overflow", "99999999999TB", 0, `"99999999999TB" is too large; use at most 8388607TB`},
		{"overflow digits", "999999999999999999999999", 0, `"999999999999999999999999" is too large; use at most 8388607TB`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, msg := parseByteSize(tc.in)
			if msg != tc.wantErr || got != tc.want {
				t.Errorf("parseByteSize(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.wantErr)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{1000, "1000B"},
		{1024, "1kB"},
		{16 << 20, "16MB"},
		{1 << 30, "1GB"},
		{3 << 40, "3TB"},
		{1536 << 20, "1536MB"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.in.String(); got != tc.want {
				t.Errorf("ByteSize(%d).String() = %q, want %q", uint64(tc.in), got, tc.want)
			}
		})
	}
}

// TestUnmarshalYAML checks the types on their own, outside Parse: a bad
// value is a *yaml.TypeError naming the line, so decoding goes on.
func TestUnmarshalYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
		S ByteSize `yaml:"s"`
	}
	if err := yaml.Unmarshal([]byte("d: 2m\ns: 16MB\n"), &v); err != nil || v.D != Duration(2*time.Minute) || v.S != 16<<20 {
		t.Fatalf("Unmarshal = %+v, %v", v, err)
	}
	err := yaml.Unmarshal([]byte("d: 4\ns: [1]\n"), &v)
	var te *yaml.TypeError
	if !asTypeError(err, &te) || len(te.Errors) != 2 {
		t.Fatalf("Unmarshal error = %v, want a TypeError with two errors", err)
	}
	if !strings.HasPrefix(te.Errors[0], `line 1: "4" is not a duration`) || te.Errors[1] != `line 2: expected a size such as "16MB", got a list` {
		t.Errorf("errors = %q", te.Errors)
	}
}

func asTypeError(err error, te **yaml.TypeError) bool {
	e, ok := err.(*yaml.TypeError)
	*te = e
	return ok
}
