package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// ErrBadPatch is returned by ApplyPatches when a patch is malformed (unknown
// kind, bad path, missing source, bad mode or owner, or a conflict with an
// earlier patch). Nothing has been written when it is returned.
var ErrBadPatch = errors.New("rootfs: invalid patch")

// PatchKind names what a Patch places in the sandbox's writable layer.
type PatchKind string

// The patch kinds, named as in microsandbox's SDK (reference §11).
const (
	PatchText     PatchKind = "text"      // a file with Data
	PatchCopyFile PatchKind = "copy_file" // a file with the content of host file Source
	PatchCopyDir  PatchKind = "copy_dir"  // the host tree Source, recursively
	PatchSymlink  PatchKind = "symlink"   // a symlink to Target
	PatchMkdir    PatchKind = "mkdir"     // a directory
	PatchRemove   PatchKind = "remove"    // an overlay whiteout hiding Path
)

// Patch is one change written into the upper image before boot.
type Patch struct {
	Kind PatchKind
	// Path is the absolute guest path, e.g. "/etc/motd"; never "/" and
	// never containing "..".
	Path string
	// Data is the content of a text patch.
	Data []byte
	// Source is the host path of a copy_file or copy_dir patch.
	Source string
	// Target is the target of a symlink patch, stored verbatim.
	Target string
	// Mode holds permission bits (setuid, setgid and sticky allowed); 0
	// means 0644 for files and 0755 for directories. Entries below a
	// copy_dir root keep their host permission bits.
	Mode os.FileMode
	// UID and GID own every entry the patch creates (parent directories
	// that did not exist are created 0755 root:root).
	UID, GID int
}

// maxTargetLen is ext4's limit for a symlink target: one 4K block less
// its NUL (names are limited by maxNameLen, NAME_MAX).
const maxTargetLen = 4095

// upperDir is the directory of the image the guest uses as overlay upperdir
// (see CreateUpper); guest path /x is upper/x in the image.
const upperDir = "upper"

// copyBufSize is large so that go-diskfs, which allocates extents on every
// Write that grows a file, makes few and long extents.
const copyBufSize = 1 << 20

// ApplyPatches writes patches, in order, into the upper image at upperPath
// (an image made by CreateUpper, not mounted), creating missing parent
// directories 0755 root:root under upper/. A later patch replaces a file,
// symlink or whiteout an earlier one placed at the same path. "remove"
// writes an overlay whiteout (character device 0:0) so that the lower entry
// disappears in the guest. Every patch is validated first, against each
// other and against what the image already holds, and nothing is written
// if one is invalid (ErrBadPatch), or cannot be written (ErrUnsupported: a
// host entry type copy_dir cannot place, or an entry already in the image
// that would have to be replaced). Copies stream from the host file. An
// error while writing leaves the image partly patched; the caller should
// discard it.
func ApplyPatches(ctx context.Context, upperPath string, patches []Patch) error {
	norm, pl, err := validatePatches(patches)
	if err != nil {
		return fmt.Errorf("apply patches to %s: %w", upperPath, err)
	}
	if err := applyPatches(ctx, upperPath, norm, pl); err != nil {
		return fmt.Errorf("apply patches to %s: %w", upperPath, err)
	}
	return nil
}

// planKind is what the patches will leave at an image path.
type planKind byte

const (
	planDir      planKind = iota + 1 // a directory (made, or a parent of a patch)
	planFile                         // a regular file or symlink
	planWhiteout                     // a whiteout
)

// plan is the tree the patches describe: every path they write, its
// parents, and which patch (index in the kept list, -1 for an entry below
// a copy_dir) places a non-directory there.
type plan struct {
	kind  map[string]planKind
	owner map[string]int
}

// add records that patch idx places kind at p. A non-directory an earlier
// patch placed at p is replaced, by dropping that patch; a copy_dir entry
// cannot be dropped and a directory cannot be replaced, so those conflicts
// are errors.
func (pl *plan) add(p string, k planKind, idx int, drop func(int)) error {
	for a := path.Dir(p); a != "/"; a = path.Dir(a) {
		switch pl.kind[a] {
		case planFile, planWhiteout:
			return fmt.Errorf("%w: parent %s is not a directory", ErrBadPatch, a)
		}
	}
	switch old := pl.kind[p]; {
	case old == planDir && k == planDir:
	case old == planDir:
		return fmt.Errorf("%w: %s is a directory of an earlier patch", ErrBadPatch, p)
	case old != 0 && pl.owner[p] < 0:
		return fmt.Errorf("%w: %s overlaps an entry of an earlier copy_dir", ErrBadPatch, p)
	case old != 0:
		// go-diskfs v1.9.4 cannot remove entries (see clear), so the
		// earlier patch is not written at all.
		drop(pl.owner[p])
		delete(pl.owner, p)
	}
	for a := path.Dir(p); a != "/"; a = path.Dir(a) {
		pl.kind[a] = planDir
	}
	pl.kind[p] = k
	if k != planDir {
		pl.owner[p] = idx
	}
	return nil
}

// validatePatches checks every patch and the tree they describe together,
// and returns the patches to write: paths cleaned, default modes filled
// in, and patches a later one replaces left out.
func validatePatches(patches []Patch) ([]Patch, *plan, error) {
	pl := &plan{kind: make(map[string]planKind), owner: make(map[string]int)}
	out := make([]Patch, 0, len(patches))
	dropped := make(map[int]bool)
	drop := func(i int) { dropped[i] = true }
	for i, p := range patches {
		n, err := validatePatch(p)
		if err == nil {
			err = pl.addPatch(n, len(out), drop)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("patch %d (%s %q): %w", i, p.Kind, p.Path, err)
		}
		out = append(out, n)
	}
	kept := make([]Patch, 0, len(out))
	for i, p := range out {
		if !dropped[i] {
			kept = append(kept, p)
		}
	}
	return kept, pl, nil
}

func (pl *plan) addPatch(p Patch, idx int, drop func(int)) error {
	switch p.Kind {
	case PatchMkdir:
		return pl.add(p.Path, planDir, idx, drop)
	case PatchRemove:
		return pl.add(p.Path, planWhiteout, idx, drop)
	case PatchCopyDir:
		if err := pl.add(p.Path, planDir, idx, drop); err != nil {
			return err
		}
		return filepath.WalkDir(p.Source, func(hp string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("%w: source: %w", ErrBadPatch, err)
			}
			rel, err := filepath.Rel(p.Source, hp)
			if err != nil || rel == "." {
				return err
			}
			k := planFile
			if d.IsDir() {
				k = planDir
			}
			return pl.add(path.Join(p.Path, filepath.ToSlash(rel)), k, -1, drop)
		})
	default:
		return pl.add(p.Path, planFile, idx, drop)
	}
}

func validatePatch(p Patch) (Patch, error) {
	clean, err := cleanGuestPath(p.Path)
	if err != nil {
		return p, err
	}
	p.Path = clean
	if p.UID < 0 || p.GID < 0 || int64(p.UID) > 1<<32-2 || int64(p.GID) > 1<<32-2 {
		return p, fmt.Errorf("%w: owner %d:%d out of range", ErrBadPatch, p.UID, p.GID)
	}
	if p.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return p, fmt.Errorf("%w: mode %v has bits other than permissions", ErrBadPatch, p.Mode)
	}
	switch p.Kind {
	case PatchText:
		p.Mode = defaultMode(p.Mode, 0o644)
	case PatchCopyFile:
		if p.Source == "" {
			return p, fmt.Errorf("%w: copy_file without a source", ErrBadPatch)
		}
		fi, err := os.Stat(p.Source)
		if err != nil {
			return p, fmt.Errorf("%w: source: %w", ErrBadPatch, err)
		}
		if !fi.Mode().IsRegular() {
			return p, fmt.Errorf("%w: source %s is not a regular file", ErrBadPatch, p.Source)
		}
		// Like cp: without a mode, the copy keeps the source's
		// permissions (an executable stays executable).
		p.Mode = defaultMode(p.Mode, fi.Mode().Perm())
	case PatchCopyDir:
		p.Mode = defaultMode(p.Mode, 0o755)
		if p.Source == "" {
			return p, fmt.Errorf("%w: copy_dir without a source", ErrBadPatch)
		}
		// Resolve a symlinked root once so that the walk (which never
		// follows symlinks) descends into it.
		src, err := filepath.EvalSymlinks(p.Source)
		if err != nil {
			return p, fmt.Errorf("%w: source: %w", ErrBadPatch, err)
		}
		p.Source = src
		if err := checkSourceTree(src); err != nil {
			return p, err
		}
	case PatchSymlink:
		if p.Target == "" || len(p.Target) > maxTargetLen || strings.IndexByte(p.Target, 0) >= 0 {
			return p, fmt.Errorf("%w: symlink target must be 1..%d bytes without NUL", ErrBadPatch, maxTargetLen)
		}
	case PatchMkdir:
		p.Mode = defaultMode(p.Mode, 0o755)
	case PatchRemove:
	default:
		return p, fmt.Errorf("%w: unknown kind %q", ErrBadPatch, p.Kind)
	}
	return p, nil
}

func defaultMode(m, def os.FileMode) os.FileMode {
	if m == 0 {
		return def
	}
	return m
}

// cleanGuestPath requires an absolute path other than "/" with no ".."
// element (rejected rather than resolved, since a caller writing ".." has
// made a mistake) and returns it cleaned.
func cleanGuestPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: path %q is not absolute", ErrBadPatch, p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%w: path contains NUL", ErrBadPatch)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: path %q contains a \"..\" element", ErrBadPatch, p)
		}
		if len(el) > maxNameLen {
			return "", fmt.Errorf("%w: path element longer than %d bytes", ErrBadPatch, maxNameLen)
		}
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("%w: path %q is the root", ErrBadPatch, p)
	}
	return c, nil
}

// checkSourceTree walks a copy_dir source and rejects what the copy could
// not place: entry types other than file, directory and symlink, over-long
// names and symlink targets.
func checkSourceTree(src string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("%w: source: %w", ErrBadPatch, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: source %s is not a directory", ErrBadPatch, src)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: source: %w", ErrBadPatch, err)
		}
		if len(d.Name()) > maxNameLen {
			return fmt.Errorf("%w: %s: name longer than %d bytes", ErrBadPatch, p, maxNameLen)
		}
		switch t := d.Type(); {
		case t.IsDir(), t.IsRegular():
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("%w: source: %w", ErrBadPatch, err)
			}
			if target == "" || len(target) > maxTargetLen {
				return fmt.Errorf("%w: %s: symlink target length %d", ErrBadPatch, p, len(target))
			}
		default:
			return fmt.Errorf("%w: %s: %v in a copy_dir source", ErrUnsupported, p, t)
		}
		return nil
	})
}

// patcher applies validated patches through go-diskfs.
type patcher struct {
	fs *ext4.FileSystem
	// whiteouts maps image paths of pending whiteouts to their inode. They
	// are placed as symlinks to whiteoutStandIn and turned into character
	// devices at the end (go-diskfs cannot make device nodes).
	whiteouts map[string]uint32
}

func applyPatches(ctx context.Context, upperPath string, patches []Patch, pl *plan) (err error) {
	f, err := os.OpenFile(upperPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrBadPatch, upperPath)
	}
	raw, err := openRawExt4(f)
	if err != nil {
		return err
	}
	if raw.needsRecovery {
		// go-diskfs does not replay the journal; writing around it would
		// corrupt the image when the kernel replays it at mount.
		return fmt.Errorf("%w: image journal needs recovery (a guest did not unmount it)", ErrUnsupported)
	}
	// An image a guest has used is guest-controlled, and go-diskfs has
	// panics on unusual inodes (see clear); report them as errors.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: go-diskfs: %v", errRawExt4, r)
		}
	}()
	fsys, err := ext4.Read(file.New(f, false), fi.Size(), 0, 0)
	if err != nil {
		return fmt.Errorf("read ext4: %w", err)
	}
	if st, err := fsys.Stat(upperDir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: image has no %s/ directory (not made by CreateUpper?)", ErrBadPatch, upperDir)
	}
	pt := &patcher{fs: fsys, whiteouts: make(map[string]uint32)}
	if err := pt.checkImage(pl); err != nil {
		return err
	}
	for i, p := range patches {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := pt.apply(ctx, p); err != nil {
			return fmt.Errorf("patch %d (%s %s): %w", i, p.Kind, p.Path, err)
		}
	}
	for ip, ino := range pt.whiteouts {
		if err := pt.finishWhiteout(raw, ip, ino); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return f.Close()
}

func (pt *patcher) apply(ctx context.Context, p Patch) error {
	ip := upperDir + p.Path // image paths are relative (dependencies.md §15.4)
	if err := pt.mkParents(path.Dir(ip)); err != nil {
		return err
	}
	switch p.Kind {
	case PatchText:
		if err := pt.clear(ip, false); err != nil {
			return err
		}
		if err := pt.writeFile(ip, strings.NewReader(string(p.Data))); err != nil {
			return err
		}
		return pt.setAttr(ip, p.Mode, p.UID, p.GID)
	case PatchCopyFile:
		if err := pt.copyFile(ctx, ip, p.Source); err != nil {
			return err
		}
		return pt.setAttr(ip, p.Mode, p.UID, p.GID)
	case PatchMkdir:
		return pt.mkdir(ip, p.Mode, p.UID, p.GID)
	case PatchCopyDir:
		return pt.copyDir(ctx, ip, p)
	case PatchSymlink:
		if err := pt.clear(ip, false); err != nil {
			return err
		}
		return pt.symlink(ip, p.Target, p.UID, p.GID)
	case PatchRemove:
		st, fi, err := pt.lookup(ip)
		if err != nil {
			return err
		}
		if fi != nil && fi.Mode()&fs.ModeCharDevice != 0 && st.Major == 0 && st.Minor == 0 {
			return nil // already a whiteout (an image patched before)
		}
		if fi != nil {
			return fmt.Errorf("%w: %s exists in the image and is not a whiteout", ErrUnsupported, ip)
		}
		if err := pt.clear(ip, false); err != nil {
			return err
		}
		return pt.whiteout(ip)
	}
	return fmt.Errorf("%w: unknown kind %q", ErrBadPatch, p.Kind)
}

// lookup returns the entry at ip, or nil when there is none.
func (pt *patcher) lookup(ip string) (*ext4.StatT, fs.FileInfo, error) {
	fi, err := pt.fs.Stat(ip)
	if err != nil {
		// go-diskfs reports a missing entry only as a formatted error;
		// tell it apart by listing the parent.
		if exists, lerr := pt.exists(ip); lerr == nil && !exists {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	st, ok := fi.Sys().(*ext4.StatT)
	if !ok {
		return nil, nil, fmt.Errorf("stat %s: no ext4 metadata", ip)
	}
	return st, fi, nil
}

func (pt *patcher) exists(ip string) (bool, error) {
	ents, err := pt.fs.ReadDir(path.Dir(ip))
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.Name() == path.Base(ip) {
			return true, nil
		}
	}
	return false, nil
}

// mkParents makes every missing directory of dir, 0755 root:root.
func (pt *patcher) mkParents(dir string) error {
	if dir == upperDir {
		return nil
	}
	if err := pt.mkParents(path.Dir(dir)); err != nil {
		return err
	}
	_, fi, err := pt.lookup(dir)
	if err != nil {
		return err
	}
	if fi != nil {
		if !fi.IsDir() {
			return fmt.Errorf("%w: parent %s is not a directory in the image", ErrBadPatch, dir)
		}
		return nil
	}
	return pt.mkdir(dir, 0o755, 0, 0)
}

// clear checks that ip is free for a new entry, or is a directory when
// keepDir. checkImage has ruled out conflicts with the image and
// validatePatches those between patches, so an entry here is a bug, not
// something to remove: go-diskfs v1.9.4 FileSystem.Remove corrupts the
// image (it clears the inode bitmap bit of the next inode, counts freed
// blocks twice, and dereferences a nil extent tree for fast symlinks and
// devices).
func (pt *patcher) clear(ip string, keepDir bool) error {
	_, fi, err := pt.lookup(ip)
	if err != nil || fi == nil {
		return err
	}
	if fi.IsDir() && keepDir {
		return nil
	}
	return fmt.Errorf("%w: %s already exists in the image", ErrUnsupported, ip)
}

// checkImage compares the planned tree with what the image already holds
// (an image patched before, or used by a guest), before anything is
// written: an existing non-directory cannot be replaced (see clear),
// except that a whiteout may stay a whiteout.
func (pt *patcher) checkImage(pl *plan) error {
	listings := make(map[string]map[string]fs.FileMode)
	list := func(dir string) (map[string]fs.FileMode, error) {
		if l, ok := listings[dir]; ok {
			return l, nil
		}
		ents, err := pt.fs.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", dir, err)
		}
		l := make(map[string]fs.FileMode, len(ents))
		for _, e := range ents {
			l[e.Name()] = e.Type()
		}
		listings[dir] = l
		return l, nil
	}
	paths := make([]string, 0, len(pl.kind))
	for p := range pl.kind {
		paths = append(paths, p)
	}
	// Parents first: a path is looked up only below existing directories.
	slices.Sort(paths)
	missing := make(map[string]bool)
	for _, p := range paths {
		ip := upperDir + p
		parent := path.Dir(ip)
		if missing[parent] {
			missing[ip] = true
			continue
		}
		l, err := list(parent)
		if err != nil {
			return err
		}
		t, ok := l[path.Base(ip)]
		switch want := pl.kind[p]; {
		case !ok:
			missing[ip] = true
		case t.IsDir() && want == planDir:
		case t.IsDir():
			return fmt.Errorf("%w: %s is a directory in the image", ErrBadPatch, p)
		case want == planDir:
			return fmt.Errorf("%w: %s is a %s in the image, not a directory", ErrBadPatch, p, typeName(t))
		case want == planWhiteout && t&fs.ModeCharDevice != 0:
			// Possibly a whiteout already; apply checks the device number.
		default:
			return fmt.Errorf("%w: %s already exists in the image (%s) and go-diskfs cannot remove it", ErrUnsupported, p, typeName(t))
		}
	}
	return nil
}

func (pt *patcher) setAttr(ip string, mode os.FileMode, uid, gid int) error {
	if err := pt.fs.Chmod(ip, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", ip, err)
	}
	if err := pt.fs.Chown(ip, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", ip, err)
	}
	return nil
}

func (pt *patcher) mkdir(ip string, mode os.FileMode, uid, gid int) error {
	if err := pt.clear(ip, true); err != nil {
		return err
	}
	if err := pt.fs.Mkdir(ip); err != nil {
		return fmt.Errorf("mkdir %s: %w", ip, err)
	}
	return pt.setAttr(ip, mode, uid, gid)
}

func (pt *patcher) writeFile(ip string, r io.Reader) error {
	w, err := pt.fs.OpenFile(ip, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("create %s: %w", ip, err)
	}
	if _, err := io.CopyBuffer(w, r, make([]byte, copyBufSize)); err != nil {
		_ = w.Close()
		return fmt.Errorf("write %s: %w", ip, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", ip, err)
	}
	return nil
}

func (pt *patcher) copyFile(ctx context.Context, ip, src string) error {
	if err := pt.clear(ip, false); err != nil {
		return err
	}
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	// Stream: only copyBufSize bytes are held at a time.
	return pt.writeFile(ip, ctxReader{ctx, r})
}

// symlink makes a symlink owned by uid:gid. go-diskfs gives a new symlink
// its parent's owner and its Chown follows symlinks, so the parent is
// owned by uid:gid for the moment of the creation.
func (pt *patcher) symlink(ip, target string, uid, gid int) error {
	dir := path.Dir(ip)
	st, _, err := pt.lookup(dir)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("parent %s missing", dir)
	}
	swap := st.UID != uint32(uid) || st.GID != uint32(gid)
	if swap {
		if err := pt.fs.Chown(dir, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	if err := pt.fs.Symlink(target, ip); err != nil {
		return fmt.Errorf("symlink %s: %w", ip, err)
	}
	if swap {
		if err := pt.fs.Chown(dir, int(st.UID), int(st.GID)); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	return nil
}

// whiteout places a symlink to whiteoutStandIn as a stand-in for a
// whiteout and records its inode for finishWhiteouts.
func (pt *patcher) whiteout(ip string) error {
	if err := pt.symlink(ip, whiteoutStandIn, 0, 0); err != nil {
		return err
	}
	st, _, err := pt.lookup(ip)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("whiteout %s vanished", ip)
	}
	pt.whiteouts[ip] = st.Ino
	return nil
}

// copyDir copies the host tree p.Source to ip. The root gets p.Mode, the
// entries below keep their host permission bits; all get p.UID:p.GID.
func (pt *patcher) copyDir(ctx context.Context, ip string, p Patch) error {
	return filepath.WalkDir(p.Source, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(p.Source, hp)
		if err != nil {
			return err
		}
		dst := path.Join(ip, filepath.ToSlash(rel))
		if rel == "." {
			return pt.mkdir(dst, p.Mode, p.UID, p.GID)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch t := d.Type(); {
		case t.IsDir():
			return pt.mkdir(dst, perm, p.UID, p.GID)
		case t.IsRegular():
			if err := pt.copyFile(ctx, dst, hp); err != nil {
				return err
			}
			return pt.setAttr(dst, perm, p.UID, p.GID)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			if err := pt.clear(dst, false); err != nil {
				return err
			}
			return pt.symlink(dst, target, p.UID, p.GID)
		default:
			return fmt.Errorf("%w: %s: %v", ErrUnsupported, hp, t)
		}
	})
}

// finishWhiteout turns the stand-in at ip into a whiteout by editing the
// image directly (patch_raw.go).
func (pt *patcher) finishWhiteout(raw *rawExt4, ip string, ino uint32) error {
	st, _, err := pt.lookup(path.Dir(ip))
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("whiteout %s: parent missing", ip)
	}
	if err := raw.makeWhiteout(st.Ino, path.Base(ip), ino); err != nil {
		return fmt.Errorf("whiteout %s: %w", ip, err)
	}
	return nil
}

func typeName(t fs.FileMode) string {
	switch {
	case t.IsRegular():
		return "regular file"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	}
	return t.String()
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
