package image

import (
	"strconv"
	"strings"
	"testing"
)

var contentRangeTests = []struct {
	in    string
	start int64
	ok    bool
}{
	{"bytes 100-199/200", 100, true},
	{"bytes 0-0/1", 0, true},
	{"bytes 5-/10", 5, true},
	{"bytes */200", 0, false},
	{"bytes -5-9/10", 0, false},
	{"items 1-2/3", 0, false},
	{"bytes 99999999999999999999-1/2", 0, false},
	{"bytes +5-9/10", 0, false},
	{"", 0, false},
}

func TestContentRangeStart(t *testing.T) {
	for _, tt := range contentRangeTests {
		start, ok := contentRangeStart(tt.in)
		if start != tt.start || ok != tt.ok {
			t.Errorf("contentRangeStart(%q) = %d, %v; want %d, %v", tt.in, start, ok, tt.start, tt.ok)
		}
	}
}

func FuzzContentRangeStart(f *testing.F) {
	for _, tt := range contentRangeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, ok := contentRangeStart(s)
		if !ok {
			return
		}
		if start < 0 {
			t.Fatalf("contentRangeStart(%q) = %d; want a non-negative offset", s, start)
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(s, "bytes "), "-")
		if strconv.FormatInt(start, 10) != strings.TrimLeft(first, "0") && start != 0 {
			t.Fatalf("contentRangeStart(%q) = %d; not the first number", s, start)
		}
	})
}
