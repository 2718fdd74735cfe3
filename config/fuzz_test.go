package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, every
// error line must start with "config <source>: ", yaml.v3's own wording
// must never reach the user, and a config that parses must survive
// Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, tc := range errorCases {
		f.Add([]byte(tc.yaml))
	}
	for _, s := range []string{witnessYAML, dataYAML, minimalWitnessYAML} {
		f.Add([]byte(s))
	}
	if full, err := os.ReadFile("testdata/full.yaml"); err == nil {
		f.Add(full)
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("raft: &r {listen: *r}\n"))
	f.Add([]byte("x: !!binary AAAA\n"))

	recoverPanics = false
	f.Cleanup(func() { recoverPanics = true; onDecodeFallback = nil })

	f.Fuzz(func(t *testing.T, data []byte) {
		onDecodeFallback = func(err error) {
			t.Errorf("the strict decoder refused what the checker accepted: %v", err)
		}
		cfg, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if cfg != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config fuzz.yaml: ") {
					t.Errorf("error line without the prefix: %q", line)
				}
			}
			for _, raw := range []string{"not found in type", "cannot unmarshal", "already defined at", "yaml: unmarshal errors"} {
				if strings.Contains(err.Error(), raw) {
					t.Errorf("yaml.v3 wording in the error: %q", err.Error())
				}
			}
			return
		}
		out, err := cfg.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(out, "fuzz.yaml")
		if err != nil {
			t.Fatalf("Parse(Marshal()): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Errorf("round trip changed the config:\n got %+v\nwant %+v", back, cfg)
		}
	})
}
