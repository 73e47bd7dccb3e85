package launch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readLogSet returns the content of path, path.1 … path.4 keyed by suffix
// ("" for the current file); absent files are left out.
func readLogSet(t *testing.T, path string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for i := 0; i <= 4; i++ {
		data, err := os.ReadFile(rotatedName(path, i))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		suffix := ""
		if i > 0 {
			suffix = fmt.Sprintf(".%d", i)
		}
		got[suffix] = string(data)
	}
	return got
}

func TestRotatingFile(t *testing.T) {
	tests := []struct {
		name    string
		initial string // content of the current file before Open
		max     int64
		writes  []string
		want    map[string]string
	}{
		{
			name:   "no rotation under limit",
			max:    10,
			writes: []string{"abc", "defghij"},
			want:   map[string]string{"": "abcdefghij"},
		},
		{
			name:   "rotates before passing limit",
			max:    10,
			writes: []string{"abcdef", "ghijk"},
			want:   map[string]string{"": "ghijk", ".1": "abcdef"},
		},
		{
			name:    "initial size counted",
			initial: "12345678",
			max:     10,
			writes:  []string{"abc"},
			want:    map[string]string{"": "abc", ".1": "12345678"},
		},
		{
			name:   "oversized write goes whole into fresh file",
			max:    4,
			writes: []string{"ab", "0123456789", "c"},
			want:   map[string]string{"": "c", ".1": "0123456789", ".2": "ab"},
		},
		{
			name:   "oversized first write is not rotated away",
			max:    4,
			writes: []string{"0123456789"},
			want:   map[string]string{"": "0123456789"},
		},
		{
			name:   "keeps three rotations and no .4",
			max:    2,
			writes: []string{"aa", "bb", "cc", "dd", "ee", "ff"},
			want:   map[string]string{"": "ff", ".1": "ee", ".2": "dd", ".3": "cc"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "runtime.log")
			if tc.initial != "" {
				if err := os.WriteFile(path, []byte(tc.initial), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			f, err := Open(path, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.writes {
				n, err := f.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, readLogSet(t, path)); diff != "" {
				t.Errorf("files mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRotatingFileDefaultMax(t *testing.T) {
	f, err := Open(filepath.Join(t.TempDir(), "x.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.maxBytes != DefaultMaxLogBytes {
		t.Errorf("maxBytes = %d; want %d", f.maxBytes, DefaultMaxLogBytes)
	}
}

func TestRotatingFileWriteAfterClose(t *testing.T) {
	f, err := Open(filepath.Join(t.TempDir(), "x.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v; want os.ErrClosed", err)
	}
}

func TestRotatingFileOpenError(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "x.log"), 0); err == nil {
		t.Error("Open in a missing directory = nil error; want error")
	}
}

// TestRotatingFileConcurrent checks that concurrent writers never split or
// lose a line across rotations.
func TestRotatingFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	const writers, lines = 8, 50
	line := func(w, i int) string { return fmt.Sprintf("writer %d line %03d\n", w, i) }
	lineLen := int64(len(line(0, 0)))
	// Room for everything in current + 3 rotations, so nothing is discarded.
	f, err := Open(path, lineLen*writers*lines/3)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				if _, err := f.Write([]byte(line(w, i))); err != nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, name := range LogFiles(path) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(data)
	}
	got := strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines; want %d", len(got), writers*lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l+"\n"] = true
	}
	for w := range writers {
		for i := range lines {
			if !seen[line(w, i)] {
				t.Errorf("line %q missing", line(w, i))
			}
		}
	}
}

func TestLogFiles(t *testing.T) {
	tests := []struct {
		name    string
		present []string // suffixes
		want    []string
	}{
		{"none", nil, nil},
		{"current only", []string{""}, []string{""}},
		{"all", []string{"", ".1", ".2", ".3", ".4"}, []string{".3", ".2", ".1", ""}},
		{"gap", []string{"", ".2"}, []string{".2", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "exec.log")
			for _, s := range tc.present {
				if err := os.WriteFile(path+s, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var want []string
			for _, s := range tc.want {
				want = append(want, path+s)
			}
			if diff := cmp.Diff(want, LogFiles(path)); diff != "" {
				t.Errorf("LogFiles mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
