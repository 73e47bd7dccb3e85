package rootfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Environment variables that raise (or lower) the image build limits. They
// are read by LimitsFromEnv; the library itself never reads the environment.
const (
	EnvMaxInodes    = "MSB_IMAGE_MAX_INODES"
	EnvMaxBytes     = "MSB_IMAGE_MAX_BYTES"
	EnvMaxFileBytes = "MSB_IMAGE_MAX_FILE_BYTES"
	EnvMaxMetadata  = "MSB_IMAGE_MAX_METADATA"
	EnvMinFree      = "MSB_IMAGE_MIN_FREE"
)

// Default limits. They are far above what real images need (a large
// CUDA/ML image has a few hundred thousand files and a few tens of GiB) and
// far below what would take the host down: the metadata budget bounds the
// builder's heap, the byte limits bound its disk use.
const (
	DefaultMaxInodes    = 1 << 20
	DefaultMaxBytes     = 64 << 30
	DefaultMaxFileBytes = 16 << 30
	DefaultMaxMetadata  = 256 << 20
	DefaultMinFree      = 1 << 30
)

// inodeCost is charged against the metadata budget for every inode the
// builder creates, named in the tar or implied as a missing parent
// directory. It covers the inode struct, its dirent, its slot in the
// parent's map and a directory's own (empty) map: measured at about 350 B
// per implied directory on amd64 (TestInodeCostCoversHeap keeps it honest).
const inodeCost = 512

// Limits bound what one image build may consume. A zero field takes its
// default; set a field to a huge value to lift a limit.
type Limits struct {
	// MaxInodes caps the inodes in the image: files, directories (also
	// parents the tar only implies), symlinks and devices.
	MaxInodes int64
	// MaxBytes caps the total uncompressed size of regular files.
	MaxBytes int64
	// MaxFileBytes caps the size of one regular file.
	MaxFileBytes int64
	// MaxMetadata caps the builder's in-memory metadata: names, link
	// targets, xattrs and a fixed cost per inode.
	MaxMetadata int64
	// MinFree is the space that must stay free on the filesystem that
	// holds the spool and the image, checked before spooling.
	MinFree int64
}

// withDefaults fills zero fields.
func (l Limits) withDefaults() Limits {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxInodes, DefaultMaxInodes)
	def(&l.MaxBytes, DefaultMaxBytes)
	def(&l.MaxFileBytes, DefaultMaxFileBytes)
	def(&l.MaxMetadata, DefaultMaxMetadata)
	def(&l.MinFree, DefaultMinFree)
	return l
}

// LimitsFromEnv returns the limits set by MSB_IMAGE_MAX_INODES,
// MSB_IMAGE_MAX_BYTES, MSB_IMAGE_MAX_FILE_BYTES, MSB_IMAGE_MAX_METADATA and
// MSB_IMAGE_MIN_FREE; unset variables leave the default.
func LimitsFromEnv() (Limits, error) {
	var l Limits
	for _, v := range []struct {
		env string
		dst *int64
	}{
		{EnvMaxInodes, &l.MaxInodes},
		{EnvMaxBytes, &l.MaxBytes},
		{EnvMaxFileBytes, &l.MaxFileBytes},
		{EnvMaxMetadata, &l.MaxMetadata},
		{EnvMinFree, &l.MinFree},
	} {
		s := os.Getenv(v.env)
		if s == "" {
			continue
		}
		n, err := ParseSize(s)
		if err != nil {
			return Limits{}, fmt.Errorf("%s: %w", v.env, err)
		}
		*v.dst = n
	}
	return l, nil
}

// ParseSize parses a non-negative count with an optional binary suffix:
// "4096", "512K", "64M", "16G", "1T" (KiB, MiB... also accepted).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift != 0 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || t == "" || t[0] == '+' {
		return 0, fmt.Errorf("size %q: want a non-negative number with an optional K, M, G or T suffix", s)
	}
	if n > (1<<63-1)>>shift {
		return 0, fmt.Errorf("size %q overflows", s)
	}
	return n << shift, nil
}

// LimitError reports a limit an image exceeded. It wraps ErrTooLarge.
// Callers name the image when they wrap it.
type LimitError struct {
	Limit string // what was limited ("inodes", "uncompressed bytes", ...)
	Value int64  // the limit's value
	Env   string // the environment variable that sets it
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("exceeds the limit of %d %s (raise it with %s): %v", e.Value, e.Limit, e.Env, ErrTooLarge)
}

func (e *LimitError) Unwrap() error { return ErrTooLarge }

// FreeBytes returns the bytes available to unprivileged users on the
// filesystem holding path.
func FreeBytes(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	free := st.Bavail * uint64(st.Bsize)
	if free > 1<<62 {
		free = 1 << 62
	}
	return int64(free), nil
}

// CheckFree fails with a LimitError on MinFree when writing need more bytes
// under dir would leave less than minFree available.
func CheckFree(dir string, need, minFree int64) error {
	free, err := FreeBytes(dir)
	if err != nil {
		return err
	}
	if free-need < minFree {
		return &LimitError{Limit: fmt.Sprintf("bytes kept free on %s (%d free, %d needed)", dir, free, need), Value: minFree, Env: EnvMinFree}
	}
	return nil
}
