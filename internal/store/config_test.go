package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var configTests = []struct {
	name string
	in   string
	ok   bool
}{
	{"empty object", `{}`, true},
	{"oci", `{"image":{"Oci":"python"},"env":[["A","1"]],"policy":{"max_duration_secs":60}}`, true},
	{"empty secrets", `{"network":{"secrets":[]}}`, true},
	{"null secret", `{"secret":null}`, true},
	{"whitespace", " \n{\"a\":1}\t", true},
	{"secrets list", `{"network":{"secrets":[{"env":"TOKEN","value":"s3cr3t"}]}}`, false},
	{"secret in array", `{"mounts":[{"x":{"Secret":"v"}}]}`, false},
	{"array", `[1,2]`, false},
	{"string", `"x"`, false},
	{"null", `null`, false},
	{"empty", ``, false},
	{"truncated", `{"a":`, false},
	{"trailing", `{} {}`, false},
	{"garbage", `{"a":1}x`, false},
	{"too large", `{"a":"` + strings.Repeat("x", MaxConfigBytes) + `"}`, false},
}

func TestCheckConfig(t *testing.T) {
	for _, tt := range configTests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkConfig([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Errorf("checkConfig(%.40q) = %v; want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("checkConfig(%.40q) = %v; want ErrInvalidConfig", tt.in, err)
			}
		})
	}
}

// FuzzSandboxConfig feeds arbitrary bytes through the config path the CLI
// and SDK use: checkConfig must never panic, anything it accepts is a JSON
// object without secrets, and an accepted config is stored and read back
// byte for byte.
func FuzzSandboxConfig(f *testing.F) {
	for _, tt := range configTests {
		if len(tt.in) < 4096 {
			f.Add([]byte(tt.in))
		}
	}
	s := openTest(f)
	sb := mustCreate(f, s, "fuzz")
	f.Fuzz(func(t *testing.T, config []byte) {
		if err := checkConfig(config); err != nil {
			if err := s.SetSandboxConfig(t.Context(), sb.ID, config); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("SetSandboxConfig(rejected config) = %v; want ErrInvalidConfig", err)
			}
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(config, &obj); err != nil {
			t.Fatalf("checkConfig accepted %q, which is not a JSON object: %v", config, err)
		}
		if err := s.SetSandboxConfig(t.Context(), sb.ID, config); err != nil {
			t.Fatalf("SetSandboxConfig(%q) = %v", config, err)
		}
		got, err := s.SandboxByID(t.Context(), sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Config) != string(config) {
			t.Fatalf("config round trip: got %q; want %q", got.Config, config)
		}
	})
}

// FuzzDecodeImageConfig covers the JSON columns of the image config table,
// whose contents originate from registries.
func FuzzDecodeImageConfig(f *testing.F) {
	for _, s := range []string{`[]`, `["PATH=/bin","A=b"]`, `{}`, `{"k":"v"}`, `null`, `[1]`, `{"k":1}`, `"x"`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if list, err := decodeStrings(s); err == nil {
			enc, err := encodeJSON(list)
			if err != nil {
				t.Fatalf("encodeJSON(%q) = %v", list, err)
			}
			again, err := decodeStrings(enc)
			if err != nil || len(again) != len(list) {
				t.Fatalf("string list round trip of %q: %q, %v", s, again, err)
			}
		}
		if labels, err := decodeLabels(s); err == nil {
			enc, err := encodeJSON(labels)
			if err != nil {
				t.Fatalf("encodeJSON(%v) = %v", labels, err)
			}
			again, err := decodeLabels(enc)
			if err != nil || len(again) != len(labels) {
				t.Fatalf("labels round trip of %q: %v, %v", s, again, err)
			}
		}
	})
}
