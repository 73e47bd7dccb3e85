package attach

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	tests := []struct {
		spec    string
		want    []byte
		wantErr string // substring; "" = no error
	}{
		{spec: "ctrl-]", want: []byte{0x1d}},
		{spec: DefaultDetachKeys, want: []byte{0x1d}},
		{spec: "ctrl-p,ctrl-q", want: []byte{0x10, 0x11}},
		{spec: "CTRL-P,Ctrl-q", want: []byte{0x10, 0x11}},
		{spec: "ctrl-a", want: []byte{0x01}},
		{spec: "ctrl-z", want: []byte{0x1a}},
		{spec: "ctrl-@", want: []byte{0x00}},
		{spec: "ctrl-[", want: []byte{0x1b}},
		{spec: `ctrl-\`, want: []byte{0x1c}},
		{spec: "ctrl-^", want: []byte{0x1e}},
		{spec: "ctrl-_", want: []byte{0x1f}},
		{spec: "a,b,c", want: []byte("abc")},
		{spec: "ctrl-x,q", want: []byte{0x18, 'q'}},
		{spec: "", wantErr: "empty"},
		{spec: "ctrl-", wantErr: `key "ctrl-"`},
		{spec: "ctrl-1", wantErr: "no ctrl-1"},
		{spec: "ctrl-ab", wantErr: `key "ctrl-ab"`},
		{spec: "ab", wantErr: `key "ab"`},
		{spec: "ctrl-p,", wantErr: `key ""`},
		{spec: " ", wantErr: "not a printable"},
		{spec: "alt-x", wantErr: `key "alt-x"`},
		{spec: strings.Repeat("a,", 16) + "a", wantErr: "17 keys, at most 16"},
	}
	for _, tc := range tests {
		got, err := ParseDetachKeys(tc.spec)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseDetachKeys(%q) = %v, %v; want an error containing %q", tc.spec, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("ParseDetachKeys(%q) = %#v, %v; want %#v", tc.spec, got, err, tc.want)
		}
	}
}

func TestFormatDetachKeys(t *testing.T) {
	tests := []struct {
		spec, want string
	}{
		{"ctrl-]", "Ctrl-]"},
		{"ctrl-p,ctrl-q", "Ctrl-P Ctrl-Q"},
		{"ctrl-@,ctrl-_,x", "Ctrl-@ Ctrl-_ x"},
	}
	for _, tc := range tests {
		keys, err := ParseDetachKeys(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := FormatDetachKeys(keys); got != tc.want {
			t.Errorf("FormatDetachKeys(%q) = %q; want %q", tc.spec, got, tc.want)
		}
	}
}

func FuzzParseDetachKeys(f *testing.F) {
	for _, s := range []string{"ctrl-]", "ctrl-p,ctrl-q", "a,b", "", "ctrl-", ",,,", "ctrl-@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		keys, err := ParseDetachKeys(spec)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > maxDetachKeys {
			t.Fatalf("ParseDetachKeys(%q) = %d keys", spec, len(keys))
		}
		// Every accepted sequence renders and parses back.
		_ = FormatDetachKeys(keys)
	})
}
