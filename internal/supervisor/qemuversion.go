package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// qemuVersionCache remembers the answer of qemu --version for one binary,
// identified by its path, size and modification time, so that the sandboxes
// after the first do not spend a process start (50-100 ms here) on it. A
// replaced or upgraded binary no longer matches and is asked again.
type qemuVersionCache struct {
	path string // the JSON file, in the home's cache directory
}

type qemuVersionEntry struct {
	Binary  string `json:"binary"`
	Size    int64  `json:"size"`
	ModNs   int64  `json:"mod_ns"`
	Version [2]int `json:"version"`
}

func binaryID(bin string) (size, modNs int64, err error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return 0, 0, err
	}
	return fi.Size(), fi.ModTime().UnixNano(), nil
}

// get returns the cached version of bin, if the cache describes bin as it
// is now.
func (c qemuVersionCache) get(bin string) ([2]int, bool) {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return [2]int{}, false
	}
	var e qemuVersionEntry
	if json.Unmarshal(b, &e) != nil || e.Binary != bin || e.Version[0] == 0 {
		return [2]int{}, false
	}
	size, mod, err := binaryID(bin)
	if err != nil || size != e.Size || mod != e.ModNs {
		return [2]int{}, false
	}
	return e.Version, true
}

// put records v as bin's version. The file is replaced by a rename, so
// concurrent sandboxes read either entry whole.
func (c qemuVersionCache) put(bin string, v [2]int) error {
	size, mod, err := binaryID(bin)
	if err != nil {
		return fmt.Errorf("cache qemu version: %w", err)
	}
	b, err := json.Marshal(qemuVersionEntry{Binary: bin, Size: size, ModNs: mod, Version: v})
	if err != nil {
		return fmt.Errorf("cache qemu version: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("cache qemu version: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(c.path), ".qemu-version-*")
	if err != nil {
		return fmt.Errorf("cache qemu version: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("cache qemu version: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cache qemu version: %w", err)
	}
	if err := os.Rename(f.Name(), c.path); err != nil {
		return fmt.Errorf("cache qemu version: %w", err)
	}
	return nil
}
