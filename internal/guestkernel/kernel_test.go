package guestkernel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// cacheWith makes a kernel cache holding builds "aaaa" and "bbbb" (the
// latter newer) and returns it with the pin line for "aaaa".
func cacheWith(t *testing.T) (cache, pin string) {
	t.Helper()
	cache = filepath.Join(t.TempDir(), "msb")
	for i, name := range []string{"aaaa", "bbbb"} {
		d := filepath.Join(cache, "kernel", name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		body := []byte("kernel " + name)
		if err := os.WriteFile(filepath.Join(d, "vmlinux"), body, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(time.Duration(i) * time.Hour)
		if err := os.Chtimes(filepath.Join(d, "vmlinux"), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte("kernel aaaa"))
	return cache, "aaaa " + hex.EncodeToString(sum[:]) + "\n"
}

func TestCached(t *testing.T) {
	tests := []struct {
		name    string
		mut     func(t *testing.T, cache string, pin *string)
		wantErr error
	}{
		{"pinned build, not the newest", nil, nil},
		{"no pin", func(t *testing.T, cache string, pin *string) { *pin = "" }, ErrNoKernel},
		{"wrong sha256", func(t *testing.T, cache string, pin *string) {
			*pin = "aaaa " + hex.EncodeToString(make([]byte, 32))
		}, ErrUntrustedKernel},
		{"pin leaves the cache", func(t *testing.T, cache string, pin *string) { *pin = "../aaaa " + (*pin)[5:] }, ErrUntrustedKernel},
		{"garbage pin", func(t *testing.T, cache string, pin *string) { *pin = "aaaa" }, ErrUntrustedKernel},
		{"world-writable kernel", func(t *testing.T, cache string, pin *string) {
			chmod(t, filepath.Join(cache, "kernel/aaaa/vmlinux"), 0o666)
		}, ErrUntrustedKernel},
		{"group-writable build dir", func(t *testing.T, cache string, pin *string) {
			chmod(t, filepath.Join(cache, "kernel/aaaa"), 0o770)
		}, ErrUntrustedKernel},
		{"world-writable cache", func(t *testing.T, cache string, pin *string) {
			chmod(t, cache, 0o777)
		}, ErrUntrustedKernel},
		{"kernel is a symlink", func(t *testing.T, cache string, pin *string) {
			p := filepath.Join(cache, "kernel/aaaa/vmlinux")
			if err := os.Rename(p, p+".real"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
		}, ErrUntrustedKernel},
		{"pinned build missing", func(t *testing.T, cache string, pin *string) {
			if err := os.RemoveAll(filepath.Join(cache, "kernel/aaaa")); err != nil {
				t.Fatal(err)
			}
		}, ErrNoKernel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache, pin := cacheWith(t)
			if tt.mut != nil {
				tt.mut(t, cache, &pin)
			}
			if pin != "" {
				if err := os.WriteFile(filepath.Join(cache, "kernel", PinFile), []byte(pin), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Cached(cache)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Cached() = %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			real, _ := filepath.EvalSymlinks(cache)
			if want := filepath.Join(real, "kernel/aaaa/vmlinux"); err != nil || got != want {
				t.Fatalf("Cached() = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCacheDirNoTmpFallback(t *testing.T) {
	t.Setenv("MSB_CACHE", "")
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	d, err := CacheDir()
	if err == nil {
		t.Fatalf("CacheDir() without HOME = %q; want an error", d)
	}
	t.Setenv("MSB_CACHE", "/srv/msb-cache")
	if d, err := CacheDir(); err != nil || d != "/srv/msb-cache" {
		t.Errorf("CacheDir() = %q, %v; want /srv/msb-cache", d, err)
	}
}

func FuzzParsePin(f *testing.F) {
	f.Add("aaaa " + hex.EncodeToString(make([]byte, 32)) + "\n")
	f.Add("../x 00")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		dir, sum, err := parsePin(s)
		if err != nil {
			return
		}
		if filepath.Base(dir) != dir || dir == "." || dir == ".." || len(sum) != 64 {
			t.Fatalf("parsePin(%q) = %q, %q; want one hex path element and a sha256", s, dir, sum)
		}
	})
}
