package msb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/agentclient"
	"github.com/msb-go/msb/internal/agentproto"
)

// copyWorkers is how many files a tree copy moves at once. The agent serves
// each request on its own goroutine, so a few in flight hide the round
// trips of small files; more would only interleave the large ones. (Under
// TCG with one vCPU, 1, 4 and 8 measured the same within noise: the guest
// CPU is the limit there.)
const copyWorkers = 4

// copyBufSize is the host-side buffer of one file transfer.
const copyBufSize = 1 << 20

// copier runs a tree copy: the walk creates directories in order and hands
// files to at most copyWorkers goroutines; directory attributes are set
// last, deepest first, so that creating their entries does not change them
// afterwards.
type copier struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	sem    chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	err  error          // first failure
	dirs []func() error // directory attribute setters, in creation order
}

func newCopier(ctx context.Context) *copier {
	ctx, cancel := context.WithCancelCause(ctx)
	return &copier{ctx: ctx, cancel: cancel, sem: make(chan struct{}, copyWorkers)}
}

func (cp *copier) fail(err error) {
	cp.mu.Lock()
	if cp.err == nil {
		cp.err = err
	}
	cp.mu.Unlock()
	cp.cancel(err)
}

// failed returns the first failure, or the context's error.
func (cp *copier) failed() error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.err != nil {
		return cp.err
	}
	return cp.ctx.Err()
}

// spawn runs fn on a worker, waiting for a free one.
func (cp *copier) spawn(fn func(ctx context.Context) error) {
	select {
	case cp.sem <- struct{}{}:
	case <-cp.ctx.Done():
		return
	}
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		defer func() { <-cp.sem }()
		if err := fn(cp.ctx); err != nil {
			cp.fail(err)
		}
	}()
}

func (cp *copier) dirDone(fn func() error) {
	cp.mu.Lock()
	cp.dirs = append(cp.dirs, fn)
	cp.mu.Unlock()
}

// finish waits for the workers, then sets the directories' attributes.
func (cp *copier) finish(walkErr error) error {
	if walkErr != nil {
		cp.fail(walkErr)
	}
	cp.wg.Wait()
	defer cp.cancel(nil)
	if err := cp.failed(); err != nil {
		return err
	}
	for i := len(cp.dirs) - 1; i >= 0; i-- {
		if err := cp.dirs[i](); err != nil {
			return err
		}
	}
	return nil
}

// CopyToHost copies the guest path to hostPath, which it creates or
// replaces: a file, a symlink (as a symlink), or a directory tree, like
// cp -a. Permission bits and modification times (to the second) are kept;
// owners are not (the host process's). Devices, fifos and sockets are
// skipped. A directory copied onto an existing host directory merges into
// it. File content is streamed, never held whole in memory. On error the
// copy is left partial.
func (f *FS) CopyToHost(ctx context.Context, guestPath, hostPath string) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	root, err := c.Stat(ctx, guestPath)
	if err != nil {
		return fmt.Errorf("copy %s to host: %w", guestPath, err)
	}
	cp := newCopier(ctx)
	err = cp.toHost(c, root, hostPath, 0)
	if err := cp.finish(err); err != nil {
		return fmt.Errorf("copy %s to host %s: %w", guestPath, hostPath, err)
	}
	return nil
}

// maxCopyDepth bounds the directory depth of a copy to the host: the guest
// lists the tree and could make it endless.
const maxCopyDepth = 1024

// toHost copies guest entry e to dst; depth is e's depth below the root of
// the copy.
func (cp *copier) toHost(c *agentclient.Client, e agentproto.FsEntry, dst string, depth int) error {
	if err := cp.failed(); err != nil {
		return err
	}
	mode := fileMode(e.Mode)
	var mtime time.Time
	if e.Modified != nil {
		mtime = time.Unix(*e.Modified, 0)
	}
	switch e.Kind {
	case "dir":
		if err := os.Mkdir(dst, 0o700); err != nil {
			fi, serr := os.Lstat(dst)
			if serr != nil || !fi.IsDir() {
				return err
			}
		}
		cp.dirDone(func() error {
			if err := os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return err
			}
			if mtime.IsZero() {
				return nil
			}
			return os.Chtimes(dst, mtime, mtime)
		})
		list, err := c.List(cp.ctx, e.Path)
		if err != nil {
			return err
		}
		if depth >= maxCopyDepth {
			return fmt.Errorf("%s: the guest's tree is deeper than %d levels", e.Path, maxCopyDepth)
		}
		seen := make(map[string]bool, len(list))
		for _, child := range list {
			// The listing comes from the guest: a name that is not a
			// plain name ("..", ".", "/") would write outside dst or
			// loop for ever, and a name listed twice (a file, then a
			// symlink) could race the file's write.
			name := path.Base(child.Path)
			if name == "." || name == ".." || name == "/" || strings.ContainsRune(name, '/') || child.Path == "" {
				return fmt.Errorf("list %s: the guest listed %q, which is not a plain name", e.Path, child.Path)
			}
			if seen[name] {
				return fmt.Errorf("list %s: the guest listed %q twice", e.Path, name)
			}
			seen[name] = true
			if err := cp.toHost(c, child, filepath.Join(dst, name), depth+1); err != nil {
				return err
			}
		}
		return nil
	case "symlink":
		if e.Target == "" {
			if !c.Ready().Has(agentproto.CapFsMeta) {
				return fmt.Errorf("symlink %s: the agent does not report symlink targets (no %s): %w",
					e.Path, agentproto.CapFsMeta, errors.ErrUnsupported)
			}
			return fmt.Errorf("symlink %s: the agent reported no target", e.Path)
		}
		if err := removeNonDir(dst); err != nil {
			return err
		}
		// A symlink's own times are not kept: os has no Lchtimes.
		return os.Symlink(e.Target, dst)
	case "file":
		cp.spawn(func(ctx context.Context) error { return fetchFile(ctx, c, e.Path, dst, mode, mtime) })
		return nil
	}
	return nil // devices, fifos, sockets
}

// removeNonDir removes dst unless it is missing or a directory, which the
// following create then reports.
func removeNonDir(dst string) error {
	fi, err := os.Lstat(dst)
	if err != nil || fi.IsDir() {
		return nil
	}
	return os.Remove(dst)
}

func fetchFile(ctx context.Context, c *agentclient.Client, src, dst string, mode os.FileMode, mtime time.Time) (err error) {
	r, err := c.ReadFile(ctx, src)
	if err != nil {
		return err
	}
	defer r.Close()
	if fi, err := os.Lstat(dst); err == nil && !fi.Mode().IsRegular() && !fi.IsDir() {
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	// O_NOFOLLOW: a symlink the same copy put at dst (a guest can list a
	// name twice) must not redirect the write.
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		// A read-only file from an earlier copy: replace it.
		if rerr := os.Remove(dst); rerr == nil {
			out, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.CopyBuffer(out, r, make([]byte, copyBufSize)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Chmod(mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
		return err
	}
	if !mtime.IsZero() {
		return os.Chtimes(dst, mtime, mtime)
	}
	return nil
}

// CopyFromHost copies hostPath into the guest at guestPath, which it
// creates or replaces: a file, a symlink (as a symlink) or a directory tree,
// like cp -a. Permission bits are kept, and modification times (to the
// second) when the agent has msb's fs.meta extension; files are owned by
// guest root. Devices, fifos and sockets are skipped. A directory copied
// onto an existing guest directory merges into it. File content is
// streamed in 1 MiB chunks. On error the copy is left partial.
func (f *FS) CopyFromHost(ctx context.Context, hostPath, guestPath string) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(hostPath)
	if err != nil {
		return fmt.Errorf("copy %s to guest: %w", hostPath, err)
	}
	cp := newCopier(ctx)
	err = cp.fromHost(c, hostPath, fi, guestPath)
	if err := cp.finish(err); err != nil {
		return fmt.Errorf("copy %s to guest %s: %w", hostPath, guestPath, err)
	}
	return nil
}

// setAttr sets a guest path's attributes, doing nothing for an agent
// without fs.meta.
func setAttr(ctx context.Context, c *agentclient.Client, name string, mode *uint32, mtime time.Time) error {
	if !c.Ready().Has(agentproto.CapFsMeta) {
		return nil
	}
	sec := mtime.Unix()
	return c.SetAttr(ctx, name, mode, &sec)
}

func (cp *copier) fromHost(c *agentclient.Client, src string, fi fs.FileInfo, dst string) error {
	if err := cp.failed(); err != nil {
		return err
	}
	mode := unixPerm(fi.Mode())
	mtime := fi.ModTime()
	switch {
	case fi.IsDir():
		if err := c.Mkdir(cp.ctx, dst); err != nil {
			return err
		}
		cp.dirDone(func() error { return setAttr(cp.ctx, c, dst, &mode, mtime) })
		des, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, de := range des {
			cfi, err := de.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since ReadDir
			}
			if err != nil {
				return err
			}
			if err := cp.fromHost(c, filepath.Join(src, de.Name()), cfi, path.Join(dst, de.Name())); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		err = c.Symlink(cp.ctx, target, dst)
		if errors.Is(err, fs.ErrExist) {
			// Replace a file or symlink; a directory stays and fails.
			if e, serr := c.Stat(cp.ctx, dst); serr == nil && e.Kind != "dir" {
				if err = c.Remove(cp.ctx, dst); err == nil {
					err = c.Symlink(cp.ctx, target, dst)
				}
			}
		}
		if err != nil {
			return err
		}
		return setAttr(cp.ctx, c, dst, nil, mtime)
	case fi.Mode().IsRegular():
		cp.spawn(func(ctx context.Context) error {
			in, err := os.Open(src)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := c.WriteFile(ctx, dst, &mode, in); err != nil {
				return err
			}
			return setAttr(ctx, c, dst, nil, mtime)
		})
	}
	return nil // devices, fifos, sockets
}
