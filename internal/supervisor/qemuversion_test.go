package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestQEMUVersionCache(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu")
	if err := os.WriteFile(bin, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := qemuVersionCache{path: filepath.Join(dir, "cache", "qemu-version.json")}
	if _, ok := c.get(bin); ok {
		t.Fatal("get on an empty cache: hit; want a miss")
	}
	if err := c.put(bin, [2]int{9, 2}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func()
		want   [2]int
		hit    bool
	}{
		{"same binary", func() {}, [2]int{9, 2}, true},
		{"other binary", func() { bin = filepath.Join(dir, "other") }, [2]int{}, false},
		{"replaced binary", func() {
			bin = filepath.Join(dir, "qemu")
			if err := os.WriteFile(bin, []byte("version 10"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(bin, time.Time{}, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, [2]int{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.change()
			got, hit := c.get(bin)
			if got != tc.want || hit != tc.hit {
				t.Errorf("get(%s) = %v, %v; want %v, %v", bin, got, hit, tc.want, tc.hit)
			}
		})
	}
}
