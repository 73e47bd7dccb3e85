package guestkernel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNoKernel reports that no guest kernel could be found.
var ErrNoKernel = errors.New("guest kernel not found")

// ErrUntrustedKernel reports a cached kernel that fails the checks Cached
// makes: writable by others, owned by another user, or not matching its pin.
var ErrUntrustedKernel = errors.New("untrusted guest kernel")

// PinFile is the name, under <cache>/kernel, of the file that pins the
// kernel to use: one line "<hash-dir> <sha256 of vmlinux>", written by
// scripts/kernel/build.sh after every build or cache hit.
const PinFile = "current"

// Locate returns the path of the guest kernel (an uncompressed vmlinux):
// $MSB_KERNEL if set, else "vmlinux" beside the running executable, else
// the pinned build in the kernel cache (Cached).
func Locate() (string, error) {
	if p := os.Getenv("MSB_KERNEL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("MSB_KERNEL: %w", err)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "vmlinux")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	dir, err := CacheDir()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	return Cached(dir)
}

// CacheDir returns msb's build cache: $MSB_CACHE, else <user cache dir>/msb
// (~/.cache/msb). There is deliberately no fallback to a shared temporary
// directory: anyone could plant a kernel there.
func CacheDir() (string, error) {
	if d := os.Getenv("MSB_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory (%w): set MSB_CACHE to a private directory, or MSB_KERNEL", err)
	}
	return filepath.Join(d, "msb"), nil
}

// Cached returns the kernel pinned in cache (<cache>/kernel/current), after
// checking that the pin, the kernel and every directory from cache down are
// owned by this user (or root) and not writable by group or others, and
// that the kernel's SHA-256 matches the pin. The newest build is never
// guessed from modification times: a stale or planted directory cannot win.
func Cached(cache string) (string, error) {
	// The cache root itself may be a symlink the user made; below it,
	// nothing may be.
	if real, err := filepath.EvalSymlinks(cache); err == nil {
		cache = real
	}
	kdir := filepath.Join(cache, "kernel")
	pin := filepath.Join(kdir, PinFile)
	raw, err := os.ReadFile(pin)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: no %s: set MSB_KERNEL, or build it with `make kernel` (scripts/kernel/build.sh)", ErrNoKernel, pin)
	}
	if err != nil {
		return "", fmt.Errorf("kernel pin: %w", err)
	}
	name, sum, err := parsePin(string(raw))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrUntrustedKernel, pin, err)
	}
	path := filepath.Join(kdir, name, "vmlinux")
	for _, p := range []string{cache, kdir, pin, filepath.Dir(path), path} {
		if err := checkPrivate(p); err != nil {
			return "", err
		}
	}
	got, err := fileSHA256(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	if got != sum {
		return "", fmt.Errorf("%w: %s hashes to %s, %s pins %s; rebuild with `make kernel`", ErrUntrustedKernel, path, got, pin, sum)
	}
	return path, nil
}

// parsePin parses "<dir> <sha256 hex>\n". dir is one path element of hex
// digits, so a pin cannot point outside the cache.
func parsePin(s string) (dir, sum string, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return "", "", errors.New("want one line \"<dir> <sha256>\"")
	}
	dir, sum = f[0], f[1]
	if !isHex(dir) || len(dir) > 64 {
		return "", "", fmt.Errorf("directory %q is not a build hash", dir)
	}
	if len(sum) != 64 || !isHex(sum) {
		return "", "", fmt.Errorf("sha256 %q malformed", sum)
	}
	return dir, sum, nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkPrivate fails unless p (not followed if a symlink) is owned by this
// user or root and writable by neither group nor others.
func checkPrivate(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoKernel, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: %s is a symlink", ErrUntrustedKernel, p)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by others (mode %v); chmod go-w it or rebuild", ErrUntrustedKernel, p, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := uint32(os.Getuid()); st.Uid != uid && st.Uid != 0 {
			return fmt.Errorf("%w: %s is owned by uid %d, not %d", ErrUntrustedKernel, p, st.Uid, uid)
		}
	}
	return nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
