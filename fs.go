package msb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"time"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
	"github.com/msb-go/msb/internal/rootfs"
)

// FS is the guest file system of a running sandbox, reached through its
// agent. Operations run as guest root. Paths are guest paths; relative ones
// are taken from the guest's root. Errors for a missing path satisfy
// errors.Is(err, fs.ErrNotExist); a stopped sandbox gives ErrNotRunning.
// An FS is safe for concurrent use.
type FS struct {
	s *Sandbox
}

// FS returns the sandbox's guest file system.
func (s *Sandbox) FS() *FS { return &FS{s: s} }

// FileInfo describes a guest file (as lstat does: a symlink is not
// followed).
type FileInfo struct {
	Name    string      // base name
	Path    string      // guest path
	Size    int64       // bytes
	Mode    os.FileMode // type and permission bits
	ModTime time.Time   // to the second
	IsDir   bool
	// Symlink is a symlink's target; empty for other files, and for every
	// file of an agent older than msb's fs.meta extension.
	Symlink string
}

// st_mode bits (POSIX); kept here so the SDK builds on every GOOS.
const (
	sIFMT  = 0o170000
	sISUID = 0o4000
	sISGID = 0o2000
	sISVTX = 0o1000
)

// fileMode converts a guest st_mode to an os.FileMode.
func fileMode(m uint32) os.FileMode { return rootfs.UnixToGoMode(m) }

// unixPerm converts an os.FileMode's permission and special bits to st_mode
// bits.
func unixPerm(fm os.FileMode) uint32 {
	m := uint32(fm.Perm())
	if fm&os.ModeSetuid != 0 {
		m |= sISUID
	}
	if fm&os.ModeSetgid != 0 {
		m |= sISGID
	}
	if fm&os.ModeSticky != 0 {
		m |= sISVTX
	}
	return m
}

func toFileInfo(e agentproto.FsEntry) FileInfo {
	fi := FileInfo{Name: path.Base(e.Path), Path: e.Path, Size: int64(min(e.Size, 1<<63-1)),
		Mode: fileMode(e.Mode), IsDir: e.Kind == "dir", Symlink: e.Target}
	if e.Mode&sIFMT == 0 { // an agent that sent only permission bits
		switch e.Kind {
		case "dir":
			fi.Mode |= os.ModeDir
		case "symlink":
			fi.Mode |= os.ModeSymlink
		}
	}
	if e.Modified != nil {
		fi.ModTime = time.Unix(*e.Modified, 0)
	}
	return fi
}

func (f *FS) client(ctx context.Context) (*agentclient.Client, error) {
	return f.s.agent(ctx)
}

// Read returns the whole guest file. Use ReadStream for large files.
func (f *FS) Read(ctx context.Context, name string) ([]byte, error) {
	r, err := f.ReadStream(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// ReadStream streams the guest file; the caller must Close the reader.
// Cancelling ctx fails further reads.
func (f *FS) ReadStream(ctx context.Context, name string) (io.ReadCloser, error) {
	c, err := f.client(ctx)
	if err != nil {
		return nil, err
	}
	return c.ReadFile(ctx, name)
}

// Write creates or truncates the guest file (and its missing parent
// directories) and writes data. A zero mode keeps an existing file's mode
// and gives a new one 0644.
func (f *FS) Write(ctx context.Context, name string, data []byte, mode os.FileMode) error {
	return f.WriteStream(ctx, name, bytes.NewReader(data), mode)
}

// WriteStream is Write with the content streamed from r in 1 MiB chunks.
// If ctx is cancelled or r fails, the guest file is left partial.
func (f *FS) WriteStream(ctx context.Context, name string, r io.Reader, mode os.FileMode) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	var m *uint32
	if mode != 0 {
		u := unixPerm(mode)
		m = &u
	}
	return c.WriteFile(ctx, name, m, r)
}

// List returns the entries of the guest directory, sorted by name.
func (f *FS) List(ctx context.Context, dir string) ([]FileInfo, error) {
	c, err := f.client(ctx)
	if err != nil {
		return nil, err
	}
	es, err := c.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, len(es))
	for i, e := range es {
		out[i] = toFileInfo(e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Stat describes the guest file without following a symlink.
func (f *FS) Stat(ctx context.Context, name string) (FileInfo, error) {
	c, err := f.client(ctx)
	if err != nil {
		return FileInfo{}, err
	}
	e, err := c.Stat(ctx, name)
	if err != nil {
		return FileInfo{}, err
	}
	return toFileInfo(e), nil
}

// Exists reports whether the guest path exists (a dangling symlink does).
func (f *FS) Exists(ctx context.Context, name string) (bool, error) {
	_, err := f.Stat(ctx, name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// Mkdir creates the guest directory and any missing parents (mkdir -p).
func (f *FS) Mkdir(ctx context.Context, dir string) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	return c.Mkdir(ctx, dir)
}

// Remove removes a guest file, symlink or empty directory. A non-empty
// directory is an error wrapping fs.ErrExist; use RemoveAll.
func (f *FS) Remove(ctx context.Context, name string) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	e, err := c.Stat(ctx, name)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if e.Kind != "dir" {
		return c.Remove(ctx, name)
	}
	// The protocol removes directories only recursively: check first.
	// An entry created between List and RemoveDir is removed too.
	list, err := c.List(ctx, name)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if len(list) > 0 {
		return fmt.Errorf("remove %s: directory not empty: %w", name, fs.ErrExist)
	}
	return c.RemoveDir(ctx, name)
}

// RemoveAll removes the guest path and everything below it. A missing path
// is not an error.
func (f *FS) RemoveAll(ctx context.Context, name string) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	e, err := c.Stat(ctx, name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("remove %s: %w", name, err)
	case e.Kind == "dir":
		return c.RemoveDir(ctx, name)
	}
	return c.Remove(ctx, name)
}

// Rename renames (moves) a guest path, replacing a file at newName.
func (f *FS) Rename(ctx context.Context, oldName, newName string) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	return c.Rename(ctx, oldName, newName)
}
