package image

import (
	"errors"
	"strings"
	"testing"
)

var referenceTests = []struct {
	in   string
	want string // normalized; "" means invalid
}{
	{"python", "docker.io/library/python:latest"},
	{"python:3.12", "docker.io/library/python:3.12"},
	{"library/python:3.12-slim", "docker.io/library/python:3.12-slim"},
	{"docker.io/python", "docker.io/library/python:latest"},
	{"index.docker.io/library/python:3", "docker.io/library/python:3"},
	{"user/repo", "docker.io/user/repo:latest"},
	{"ghcr.io/o/r@sha256:" + strings.Repeat("ab", 32), "ghcr.io/o/r@sha256:" + strings.Repeat("ab", 32)},
	{"ghcr.io/o/r:v1@sha256:" + strings.Repeat("0", 64), "ghcr.io/o/r:v1@sha256:" + strings.Repeat("0", 64)},
	{"localhost:5000/x", "localhost:5000/x:latest"},
	{"localhost/x:1", "localhost/x:1"},
	{"127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"},
	{"[::1]:5000/x", "[::1]:5000/x:latest"},
	{"Registry.Example.COM/x", "Registry.Example.COM/x:latest"},
	{"quay.io/a.b_c__d-e---f/g", "quay.io/a.b_c__d-e---f/g:latest"},
	{"x:" + strings.Repeat("t", 128), "docker.io/library/x:" + strings.Repeat("t", 128)},
	{"", ""},
	{"Python", ""},
	{"python:", ""},
	{":tag", ""},
	{"python:-x", ""},
	{"python:" + strings.Repeat("t", 129), ""},
	{"python@sha256:abc", ""},
	{"python@md5:" + strings.Repeat("0", 32), ""},
	{"python@sha256:" + strings.Repeat("A", 64), ""},
	{"a//b", ""},
	{"a/b/", ""},
	{"/a", ""},
	{"a_-b", ""},
	{"-a", ""},
	{"a..b", ""},
	{"localhost:0/x", ""},
	{"localhost:99999/x", ""},
	{"localhost:/x", ""},
	{"exa_mple.com/x", ""},
	{"[::1/x", ""},
	{"[1.2.3.4]/x", ""},
	{"a b", ""},
	{"a\x00b", ""},
	{strings.Repeat("a", 250) + "/bcdef", ""},
}

func TestParseReference(t *testing.T) {
	for _, tt := range referenceTests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalidReference) {
					t.Errorf("ParseReference(%q) = %v, %v; want ErrInvalidReference", tt.in, r, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseReference(%q) = %v; want %s", tt.in, err, tt.want)
			}
			if got := r.String(); got != tt.want {
				t.Errorf("ParseReference(%q) = %s; want %s", tt.in, got, tt.want)
			}
			if _, err := r.ggcr(false); err != nil {
				t.Errorf("ggcr(%s) = %v", r, err)
			}
		})
	}
}

func FuzzParseReference(f *testing.F) {
	for _, tt := range referenceTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("ParseReference(%q) error %v does not wrap ErrInvalidReference", s, err)
			}
			return
		}
		// A normalized reference parses to itself, and ggcr accepts it.
		again, err := ParseReference(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseReference(%q) = %+v; reparsing %q = %+v, %v", s, r, r.String(), again, err)
		}
		if r.Registry == "" || r.Repository == "" || (r.Tag == "" && r.Digest == "") {
			t.Fatalf("ParseReference(%q) = %+v: missing part", s, r)
		}
		if _, err := r.ggcr(false); err != nil {
			t.Fatalf("ggcr(%s) = %v", r, err)
		}
	})
}
