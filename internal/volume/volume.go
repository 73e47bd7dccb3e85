// Package volume owns the named volumes under MSB_HOME: their layout, their
// metadata file and the rules for removing them. It uses only the standard
// library and internal/home.
//
//	volumes/<name>/volume.json   {name, created_at, quota_bytes, labels}
//	volumes/<name>/data/         what the guest sees (a virtio-fs bind)
//
// A named volume is independent of the sandboxes that mount it: removing a
// sandbox keeps its volumes. The quota is recorded here; the sandbox process
// enforces it on writes through the volume's share (package passthrough). Which sandboxes use a volume is known
// only to the store, so Remove takes that list from its caller.
//
// Functions are safe for concurrent use by several processes in the sense
// that volume.json is written atomically; two concurrent Creates of one name
// both succeed and one metadata file wins.
package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/home"
)

// Errors callers test with errors.Is.
var (
	ErrNotFound = errors.New("volume not found")
	ErrExists   = errors.New("volume exists")
	ErrInUse    = errors.New("volume is in use")
)

const (
	metaFile = "volume.json"
	dataDir  = "data"
	// dataMode lets guest users other than root read the volume's root;
	// the home's 0700 directories above it keep other host users out.
	dataMode os.FileMode = 0o755
)

// Volume is a named volume's metadata, as stored in volume.json.
type Volume struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// QuotaBytes is the size limit (0: none), enforced by the sandbox
	// process on the guest's writes (not on the host's).
	QuotaBytes int64             `json:"quota_bytes,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// ValidName checks a volume name: [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}, the
// rule of every name that becomes a directory under the home.
func ValidName(name string) error {
	if err := home.ValidName(name); err != nil {
		return fmt.Errorf("volume: %w", err)
	}
	return nil
}

// Dir is volumes/<name>. The caller must have checked name with ValidName.
func Dir(h home.Home, name string) string { return h.VolumeDir(name) }

// DataDir is volumes/<name>/data, the directory a sandbox mounts.
func DataDir(h home.Home, name string) string { return filepath.Join(h.VolumeDir(name), dataDir) }

func metaPath(h home.Home, name string) string { return filepath.Join(h.VolumeDir(name), metaFile) }

// Create makes the volume name with the given quota and labels. Creating a
// volume that exists is not an error when it asks for nothing different:
// zero quota and no labels, or the same ones; then the existing volume is
// returned. Otherwise Create reports ErrExists.
func Create(h home.Home, name string, quotaBytes int64, labels map[string]string) (Volume, error) {
	if err := ValidName(name); err != nil {
		return Volume{}, err
	}
	if quotaBytes < 0 {
		return Volume{}, fmt.Errorf("volume %q: negative quota", name)
	}
	for k := range labels {
		if k == "" || strings.ContainsAny(k, "=\n") {
			return Volume{}, fmt.Errorf("volume %q: invalid label key %q", name, k)
		}
	}
	v, err := Get(h, name)
	switch {
	case err == nil:
		same := quotaBytes == v.QuotaBytes && mapsEqual(labels, v.Labels)
		if (quotaBytes == 0 && len(labels) == 0) || same {
			return v, ensureData(h, name)
		}
		return Volume{}, fmt.Errorf("volume %q: %w with a different quota or labels", name, ErrExists)
	case !errors.Is(err, ErrNotFound):
		return Volume{}, err
	}
	if len(labels) == 0 {
		labels = nil
	}
	v = Volume{Name: name, CreatedAt: time.Now().UTC().Truncate(time.Millisecond), QuotaBytes: quotaBytes, Labels: labels}
	if err := home.EnsureDir(h.VolumeDir(name)); err != nil {
		return Volume{}, err
	}
	if err := ensureData(h, name); err != nil {
		return Volume{}, err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return Volume{}, err
	}
	if err := home.WriteFileAtomic(metaPath(h, name), append(b, '\n'), 0o644); err != nil {
		return Volume{}, fmt.Errorf("create volume %q: %w", name, err)
	}
	return v, nil
}

// Ensure returns the volume name, creating it without quota or labels if it
// does not exist: what a sandbox mounting an unknown name gets.
func Ensure(h home.Home, name string) (Volume, error) { return Create(h, name, 0, nil) }

func ensureData(h home.Home, name string) error {
	if err := os.Mkdir(DataDir(h, name), dataMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create volume %q: %w", name, err)
	}
	return nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Get reads the metadata of volume name, or returns ErrNotFound. A
// directory without volume.json (made by hand, or by an older msb) is a
// volume without quota or labels, created when the directory was.
func Get(h home.Home, name string) (Volume, error) {
	if err := ValidName(name); err != nil {
		return Volume{}, err
	}
	st, err := os.Stat(h.VolumeDir(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Volume{}, fmt.Errorf("volume %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Volume{}, err
	}
	if !st.IsDir() {
		return Volume{}, fmt.Errorf("volume %q: %s is not a directory", name, h.VolumeDir(name))
	}
	b, err := os.ReadFile(metaPath(h, name))
	if errors.Is(err, fs.ErrNotExist) {
		return Volume{Name: name, CreatedAt: st.ModTime().UTC()}, nil
	}
	if err != nil {
		return Volume{}, err
	}
	var v Volume
	if err := json.Unmarshal(b, &v); err != nil {
		return Volume{}, fmt.Errorf("volume %q: %s: %w", name, metaFile, err)
	}
	v.Name = name
	return v, nil
}

// List returns every volume, by name. Entries of the volumes directory that
// are not valid volume names are skipped.
func List(h home.Home) ([]Volume, error) {
	ents, err := os.ReadDir(h.VolumesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []Volume
	for _, e := range ents {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		v, err := Get(h, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Remove deletes volume name and its data. users are the sandboxes that
// mount it (from their stored configs); unless force, a volume with users
// is refused with ErrInUse.
func Remove(h home.Home, name string, users []string, force bool) error {
	if _, err := Get(h, name); err != nil {
		return err
	}
	if len(users) > 0 && !force {
		return fmt.Errorf("volume %q: %w by sandbox %s (remove it first, or use -f)", name, ErrInUse,
			strings.Join(users, ", "))
	}
	// RemoveAll cannot descend into directories the guest made read-only.
	_ = filepath.WalkDir(h.VolumeDir(name), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(h.VolumeDir(name)); err != nil {
		return fmt.Errorf("remove volume %q: %w", name, err)
	}
	return nil
}

// Usage is the disk space the files under dir take, like du: allocated
// blocks where the platform reports them, else file sizes; a file with
// several links counts once.
func Usage(dir string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := inode{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += int64(st.Blocks) * 512
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("volume usage: %w", err)
	}
	return total, nil
}

// Users returns, sorted, the names in byVolume whose volumes include name:
// a helper for callers that collect each sandbox's volumes.
func Users(name string, byVolume map[string][]string) []string {
	var out []string
	for sb, vols := range byVolume {
		if slices.Contains(vols, name) {
			out = append(out, sb)
		}
	}
	slices.Sort(out)
	return out
}
