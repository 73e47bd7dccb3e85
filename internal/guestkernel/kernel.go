package guestkernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// ErrNoKernel reports that no guest kernel could be found.
var ErrNoKernel = errors.New("guest kernel not found")

// Locate returns the path of the guest kernel (an uncompressed vmlinux):
// $MSB_KERNEL if set, else "vmlinux" beside the running executable, else the
// newest build in the kernel cache (~/.cache/msb/kernel/*/vmlinux, or
// $MSB_CACHE/kernel).
func Locate() (string, error) {
	if p := os.Getenv("MSB_KERNEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("MSB_KERNEL: %w", err)
		}
		return p, nil
	}
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "vmlinux"))
	}
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	if p := newestCached(CacheDir()); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("%w: set MSB_KERNEL, or build it with `make kernel` (scripts/kernel/build.sh)", ErrNoKernel)
}

// CacheDir returns msb's build cache: $MSB_CACHE, else ~/.cache/msb.
func CacheDir() string {
	if d := os.Getenv("MSB_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "msb")
	}
	return filepath.Join(os.TempDir(), "msb-cache")
}

func newestCached(cache string) string {
	matches, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", "vmlinux"))
	type kv struct {
		path string
		mod  int64
	}
	var found []kv
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil {
			found = append(found, kv{m, st.ModTime().UnixNano()})
		}
	}
	if len(found) == 0 {
		return ""
	}
	sort.Slice(found, func(i, j int) bool { return found[i].mod > found[j].mod })
	return found[0].path
}
