package home

import (
	"fmt"
	"os"
)

// WriteFileAtomic writes data to path through path+".tmp" and a rename, so
// readers see the old file or the whole new one, never a prefix (the
// boot-error.json and heartbeat.json protocol, reference §5–6). The file is
// created with perm; use FileMode for launch.json and anything holding
// secrets. The parent directory must exist.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	// Remove a stale temp file so perm applies (OpenFile keeps the mode of
	// an existing file).
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // the umask may have narrowed perm; make it exact
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
