package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Limits on hostile layer input. Every in-memory structure BuildFromLayers
// keeps is bounded by these; file contents go to a spool file on disk.
const (
	headersPerInode = 4               // tar headers allowed per inode of MaxInodes (whiteouts and rewrites create none)
	maxPathLen      = 4096            // PATH_MAX
	maxNameLen      = 255             // NAME_MAX
	maxLinkTarget   = 4095            // symlink target, as Linux limits it
	maxDepth        = 2048            // directory nesting (a deeper path exceeds PATH_MAX)
	maxSymlinks     = 40              // symlink hops while resolving one path (Linux MAXSYMLINKS)
	maxXattrName    = 255             // EROFS e_name_len is a u8
	maxXattrValue   = 64<<10 - 1      // EROFS e_value_size is a u16
	maxXattrBytes   = 64 << 10        // all xattrs of one entry
	paxXattr        = "SCHILY.xattr." // PAX record prefix for xattrs (star/GNU tar)
	whiteout        = ".wh."          // OCI image-spec layer.md: whiteout prefix
	opaque          = ".wh..wh..opq"  // OCI image-spec layer.md: opaque directory marker
)

// BuildFromLayers flattens OCI layer tar streams (bottom to top, already
// decompressed) into one EROFS image at dst, written through dst+".tmp" and
// a rename.
//
// Whiteouts (.wh.name) and opaque markers (.wh..wh..opq) remove entries of
// lower layers (OCI image-spec, layer.md "Whiteouts"); hardlinks stay
// hardlinks; symlinks, devices, fifos, PAX SCHILY.xattr.* xattrs, uid/gid and
// mode are kept. Input is hostile: entries are applied to an in-memory tree,
// never to the host filesystem; names containing ".." are rejected
// (ErrUnsafePath), absolute names are taken relative to the root, symlinks
// met while resolving a parent are followed inside the tree only, and
// hardlinks to missing entries, directories or names with ".." are rejected
// (ErrBadHardlink). File contents are spooled to a temporary file beside
// dst, so memory use does not grow with layer size. The default Limits
// apply.
func BuildFromLayers(ctx context.Context, layers []io.Reader, dst string) error {
	return BuildFromLayersLimited(ctx, layers, dst, Limits{})
}

// BuildFromLayersLimited is BuildFromLayers under lim: a build that would
// exceed one fails with a *LimitError (wrapping ErrTooLarge) as soon as the
// offending entry is read, before its data is written.
func BuildFromLayersLimited(ctx context.Context, layers []io.Reader, dst string, lim Limits) error {
	lim = lim.withDefaults()
	spool, err := os.CreateTemp(filepath.Dir(dst), ".msb-layers-*")
	if err != nil {
		return fmt.Errorf("build %s: %w", dst, err)
	}
	// Unlinked at once: the open descriptor keeps the data until Close.
	_ = os.Remove(spool.Name())
	defer spool.Close()

	b := &layerBuilder{root: newDir(0o755), spool: spool, lim: lim}
	for i, r := range layers {
		if err := b.apply(ctx, i, r); err != nil {
			return fmt.Errorf("build %s: layer %d: %w", dst, i, err)
		}
	}
	// The image holds about as much data as the spool, which is gone by
	// the time the image is complete; check before writing it.
	if err := CheckFree(filepath.Dir(dst), b.dataBytes, lim.MinFree); err != nil {
		return fmt.Errorf("build %s: %w", dst, err)
	}
	if err := writeImage(ctx, b.root, dst); err != nil {
		return fmt.Errorf("build %s: %w", dst, err)
	}
	return nil
}

type layerBuilder struct {
	root      *inode
	spool     *os.File
	lim       Limits
	spoolOff  int64
	headers   int64
	inodes    int64
	metaBytes int64
	dataBytes int64 // regular file bytes, as headers declare them
}

func (b *layerBuilder) apply(ctx context.Context, layer int, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		// Headers that create nothing (whiteouts, rewrites of one name)
		// cost only time; bound that too.
		b.headers++
		if b.headers > b.lim.MaxInodes*headersPerInode {
			return &LimitError{Limit: "tar headers (4 per inode allowed)", Value: b.lim.MaxInodes * headersPerInode, Env: EnvMaxInodes}
		}
		if err := b.entry(ctx, layer, hdr, tr); err != nil {
			return fmt.Errorf("%q: %w", shortName(hdr.Name), err)
		}
	}
}

// shortName trims a (hostile, up to PATH_MAX) entry name for messages.
func shortName(name string) string {
	const keep = 120
	if len(name) <= keep {
		return name
	}
	return name[:keep/2] + "..." + name[len(name)-keep/2:]
}

// splitName validates a tar entry name and returns its components. Leading
// "/" and "./" are dropped; empty and "." components are skipped; ".." is
// rejected rather than clamped, so a crafted name can never silently
// replace an unrelated file.
func splitName(name string, limitErr error) ([]string, error) {
	if len(name) > maxPathLen {
		return nil, fmt.Errorf("path longer than %d: %w", maxPathLen, ErrTooLarge)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("NUL in path: %w", limitErr)
	}
	var parts []string
	for _, c := range strings.Split(name, "/") {
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			return nil, fmt.Errorf("'..' in path: %w", limitErr)
		case len(c) > maxNameLen:
			return nil, fmt.Errorf("name longer than %d: %w", maxNameLen, ErrTooLarge)
		}
		parts = append(parts, c)
	}
	return parts, nil
}

func (b *layerBuilder) charge(n int) error {
	b.metaBytes += int64(n)
	if b.metaBytes > b.lim.MaxMetadata {
		return &LimitError{Limit: "bytes of metadata in memory", Value: b.lim.MaxMetadata, Env: EnvMaxMetadata}
	}
	return nil
}

// replaced gives back what a non-directory entry cost when a later entry
// takes its name: images that rewrite whole trees in an upper layer (chown
// -R, chmod -R) must not count every file twice. A hardlinked inode stays
// alive, but its extra names were charged in full when they were made. A
// replaced directory is not refunded: its subtree may be large and this
// stays conservative.
func (b *layerBuilder) replaced(old *dirent) {
	if old == nil || old.ino.isDir() {
		return
	}
	b.inodes--
	b.metaBytes -= inodeCost
}

// newInode counts one more inode (named or implied) against MaxInodes and
// charges its fixed cost plus its name against the metadata budget.
func (b *layerBuilder) newInode(name string) error {
	b.inodes++
	if b.inodes > b.lim.MaxInodes {
		return &LimitError{Limit: "inodes", Value: b.lim.MaxInodes, Env: EnvMaxInodes}
	}
	return b.charge(inodeCost + len(name))
}

func (b *layerBuilder) entry(ctx context.Context, layer int, hdr *tar.Header, data io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header (e.g. git archive): not an entry
	}
	parts, err := splitName(hdr.Name, ErrUnsafePath)
	if err != nil {
		return err
	}
	if err := b.charge(len(hdr.Name) + len(hdr.Linkname)); err != nil {
		return err
	}
	if len(parts) == 0 {
		// "./" describes the root directory itself.
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("root entry of type %q: %w", hdr.Typeflag, ErrUnsupported)
		}
		return b.setMeta(b.root, hdr)
	}
	base := parts[len(parts)-1]
	if strings.HasPrefix(base, whiteout) {
		return b.whiteout(layer, parts[:len(parts)-1], base)
	}
	parent, err := b.resolve(parts[:len(parts)-1], layer, true)
	if err != nil {
		return err
	}
	old := parent.children[base]
	// Every path below either fails the build or replaces old.
	b.replaced(old)

	switch hdr.Typeflag {
	case tar.TypeDir:
		if old != nil && old.ino.isDir() {
			old.layer = layer
			return b.setMeta(old.ino, hdr)
		}
		if err := b.newInode(base); err != nil {
			return err
		}
		d := newDir(0)
		if err := b.setMeta(d, hdr); err != nil {
			return err
		}
		parent.children[strings.Clone(base)] = &dirent{ino: d, layer: layer}
		return nil
	case tar.TypeLink:
		target, err := b.linkTarget(hdr.Linkname, layer)
		if err != nil {
			return err
		}
		// A hardlink adds a name, not an inode, but its dirent and map
		// slot cost about as much.
		if err := b.charge(inodeCost + len(base)); err != nil {
			return err
		}
		parent.children[strings.Clone(base)] = &dirent{ino: target, layer: layer}
		return nil
	}

	if err := b.newInode(base); err != nil {
		return err
	}
	n := &inode{}
	if err := b.setMeta(n, hdr); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg: // the Reader turns the old TypeRegA into TypeReg
		if isSparse(hdr) {
			// A sparse entry expands a few bytes of input into up to
			// MaxFileBytes bytes of zeros; layer builders never write them.
			return fmt.Errorf("sparse file: %w", ErrUnsupported)
		}
		if err := b.spoolData(ctx, n, hdr.Size, data); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || len(hdr.Linkname) > maxLinkTarget || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("symlink target of length %d: %w", len(hdr.Linkname), ErrUnsupported)
		}
		n.target = strings.Clone(hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor < 0 || hdr.Devminor > 0xfffff {
			return fmt.Errorf("device %d:%d: %w", hdr.Devmajor, hdr.Devminor, ErrTooLarge)
		}
		n.rdev = encodeDev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeFifo:
	default:
		return fmt.Errorf("tar type %q: %w", hdr.Typeflag, ErrUnsupported)
	}
	// Clone: base is a substring of the header's whole name, which the
	// map would otherwise keep alive (up to PATH_MAX per short name).
	parent.children[strings.Clone(base)] = &dirent{ino: n, layer: layer}
	return nil
}

// whiteout applies a .wh. entry: it removes names of lower layers only
// (OCI image-spec layer.md: whiteouts apply to lower layers; entries of the
// same layer are kept whatever their order in the tar).
func (b *layerBuilder) whiteout(layer int, dirParts []string, base string) error {
	dir, err := b.resolve(dirParts, layer, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	if base == opaque {
		for name, de := range dir.children {
			if de.layer < layer {
				delete(dir.children, name)
			}
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteout)
	if strings.HasPrefix(name, whiteout) {
		return nil // other AUFS metadata (.wh..wh.plnk, ...): not content
	}
	if de, ok := dir.children[name]; ok && de.layer < layer {
		delete(dir.children, name)
	}
	return nil
}

// resolve walks parts from the root and returns the directory they name.
// Symlinks met on the way are followed inside the tree: an absolute target
// restarts at the tree's root and ".." stops at it, so no path can leave the
// tree. Missing directories are created (mode 0755, root) when create is
// set; otherwise resolve returns fs.ErrNotExist.
func (b *layerBuilder) resolve(parts []string, layer int, create bool) (*inode, error) {
	stack := []*inode{b.root}
	hops := 0
	parts = append([]string(nil), parts...)
	for len(parts) > 0 {
		c := parts[0]
		parts = parts[1:]
		cur := stack[len(stack)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if len(stack) > maxDepth {
			return nil, fmt.Errorf("nesting deeper than %d: %w", maxDepth, ErrTooLarge)
		}
		de, ok := cur.children[c]
		switch {
		case !ok:
			if !create {
				return nil, fs.ErrNotExist
			}
			// An implied parent costs as much memory as a named one: a
			// layer of deep paths creates thousands per header.
			if err := b.newInode(c); err != nil {
				return nil, err
			}
			d := newDir(0o755)
			cur.children[strings.Clone(c)] = &dirent{ino: d, layer: layer}
			stack = append(stack, d)
		case de.ino.isDir():
			stack = append(stack, de.ino)
		case de.ino.mode&fs.ModeSymlink != 0:
			hops++
			if hops > maxSymlinks {
				return nil, fmt.Errorf("more than %d symlinks: %w", maxSymlinks, ErrUnsafePath)
			}
			t := de.ino.target
			if strings.HasPrefix(t, "/") {
				stack = stack[:1]
			}
			parts = append(strings.Split(t, "/"), parts...)
		default:
			return nil, fmt.Errorf("%q is not a directory: %w", c, ErrUnsafePath)
		}
	}
	return stack[len(stack)-1], nil
}

// linkTarget resolves a hardlink's target name to its inode.
func (b *layerBuilder) linkTarget(name string, layer int) (*inode, error) {
	parts, err := splitName(name, ErrBadHardlink)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("link to the root: %w", ErrBadHardlink)
	}
	dir, err := b.resolve(parts[:len(parts)-1], layer, false)
	if err != nil {
		return nil, fmt.Errorf("link target %q: %w: %w", name, ErrBadHardlink, err)
	}
	de, ok := dir.children[parts[len(parts)-1]]
	if !ok {
		return nil, fmt.Errorf("link target %q missing: %w", name, ErrBadHardlink)
	}
	if de.ino.isDir() {
		return nil, fmt.Errorf("link target %q is a directory: %w", name, ErrBadHardlink)
	}
	return de.ino, nil
}

// setMeta copies mode, ownership, mtime and xattrs from hdr to n, keeping
// n's type.
func (b *layerBuilder) setMeta(n *inode, hdr *tar.Header) error {
	if hdr.Uid < 0 || int64(hdr.Uid) > 0xffffffff || hdr.Gid < 0 || int64(hdr.Gid) > 0xffffffff {
		return fmt.Errorf("owner %d:%d: %w", hdr.Uid, hdr.Gid, ErrTooLarge)
	}
	var typ uint32
	switch hdr.Typeflag {
	case tar.TypeDir:
		typ = sIFDIR
	case tar.TypeSymlink:
		typ = sIFLNK
	case tar.TypeChar:
		typ = sIFCHR
	case tar.TypeBlock:
		typ = sIFBLK
	case tar.TypeFifo:
		typ = sIFIFO
	default:
		typ = sIFREG
	}
	n.mode = UnixToGoMode(typ | uint32(hdr.Mode&0o7777))
	if typ == sIFLNK {
		n.mode = fs.ModeSymlink | 0o777 // Linux ignores symlink permissions
	}
	n.uid, n.gid = uint32(hdr.Uid), uint32(hdr.Gid)
	n.mtime = hdr.ModTime.Unix()
	n.mtimeNs = uint32(hdr.ModTime.Nanosecond())
	if n.mtime < 0 {
		n.mtime, n.mtimeNs = 0, 0 // EROFS stores an unsigned mtime
	}
	x, err := paxXattrs(hdr.PAXRecords)
	if err != nil {
		return err
	}
	if err := b.charge(xattrBytes(x)); err != nil {
		return err
	}
	n.xattrs = x
	return nil
}

func xattrBytes(x map[string]string) int {
	n := 0
	for k, v := range x {
		n += len(k) + len(v)
	}
	return n
}

// paxXattrs extracts SCHILY.xattr.* records, enforcing EROFS's size limits.
func paxXattrs(pax map[string]string) (map[string]string, error) {
	var out map[string]string
	total := 0
	for k, v := range pax {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		if name == "" || strings.IndexByte(name, 0) >= 0 {
			return nil, fmt.Errorf("xattr name %q: %w", name, ErrUnsupported)
		}
		if len(name) > maxXattrName+len("system.posix_acl_default.") || len(v) > maxXattrValue {
			return nil, fmt.Errorf("xattr %q of %d bytes: %w", name, len(v), ErrTooLarge)
		}
		total += len(name) + len(v)
		if total > maxXattrBytes {
			return nil, fmt.Errorf("xattrs over %d bytes: %w", maxXattrBytes, ErrTooLarge)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out, nil
}

// spoolData appends a regular file's content to the spool and points n at it.
// Limits are checked against the declared size before anything is written;
// runs of zeros become holes in the spool.
func (b *layerBuilder) spoolData(ctx context.Context, n *inode, size int64, data io.Reader) error {
	if size < 0 {
		return fmt.Errorf("file size %d: %w", size, ErrTooLarge)
	}
	if size > b.lim.MaxFileBytes {
		return &LimitError{Limit: fmt.Sprintf("bytes in one file (this one has %d)", size), Value: b.lim.MaxFileBytes, Env: EnvMaxFileBytes}
	}
	if b.dataBytes+size > b.lim.MaxBytes {
		return &LimitError{Limit: "uncompressed bytes of file data", Value: b.lim.MaxBytes, Env: EnvMaxBytes}
	}
	b.dataBytes += size
	n.size = size
	if size == 0 {
		return nil
	}
	if err := CheckFree(filepath.Dir(b.spool.Name()), size, b.lim.MinFree); err != nil {
		return err
	}
	off := b.spoolOff
	if size >= sparseBlock {
		// Block-aligned, so that zero blocks of the file are holes.
		off = (off + sparseBlock - 1) &^ (sparseBlock - 1)
	}
	copied, err := spoolSparse(b.spool, off, cancelReader{ctx.Err, data}, size)
	b.spoolOff = off + copied
	if err != nil {
		return fmt.Errorf("spool %d bytes: %w", size, err)
	}
	spool := b.spool
	n.data = func() (io.Reader, error) { return io.NewSectionReader(spool, off, size), nil }
	return nil
}

// isSparse reports whether hdr uses a GNU sparse format (PAX GNU.sparse.*
// records; the old GNU 'S' type falls through to ErrUnsupported).
func isSparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// cancelReader stops a long copy once cancelled (a ctx.Err) reports an error.
type cancelReader struct {
	cancelled func() error
	r         io.Reader
}

func (c cancelReader) Read(p []byte) (int, error) {
	if err := c.cancelled(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
