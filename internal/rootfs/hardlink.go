package rootfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// On-disk EROFS constants (Linux fs/erofs/erofs_fs.h).
const (
	erofsSuperOffset  = 1024
	erofsMagic        = 0xE0F5E1E2
	erofsInodeSlot    = 32 // NIDs count 32-byte slots from meta_blkaddr
	erofsCompactSize  = 32
	erofsExtendedSize = 64
	erofsDirentSize   = 12
	layoutFlatPlain   = 0
	layoutFlatInline  = 2
)

// erofsImage is the minimal EROFS reader patchHardlinks needs: path lookup
// through uncompressed directories, and the file offset of each dirent.
type erofsImage struct {
	f         *os.File
	blockSize int64
	rootNID   uint64
	metaStart int64
}

func openErofsImage(f *os.File) (*erofsImage, error) {
	var sb [128]byte
	if _, err := f.ReadAt(sb[:], erofsSuperOffset); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	if binary.LittleEndian.Uint32(sb[0:]) != erofsMagic {
		return nil, fmt.Errorf("superblock magic: %w", errBadImage)
	}
	bits := sb[12]
	if bits < 9 || bits > 16 {
		return nil, fmt.Errorf("block size bits %d: %w", bits, errBadImage)
	}
	img := &erofsImage{
		f:         f,
		blockSize: 1 << bits,
		rootNID:   uint64(binary.LittleEndian.Uint16(sb[14:])),
	}
	img.metaStart = int64(binary.LittleEndian.Uint32(sb[40:])) * img.blockSize
	return img, nil
}

// dirSegments returns the file extents (each at most one block) holding the
// dirent blocks of directory nid.
func (img *erofsImage) dirSegments(nid uint64) ([][2]int64, error) {
	off := img.metaStart + int64(nid)*erofsInodeSlot
	var ino [erofsExtendedSize]byte
	if _, err := img.f.ReadAt(ino[:], off); err != nil {
		return nil, fmt.Errorf("read inode %d: %w", nid, err)
	}
	format := binary.LittleEndian.Uint16(ino[0:])
	icount := int64(binary.LittleEndian.Uint16(ino[2:]))
	mode := binary.LittleEndian.Uint16(ino[4:])
	if mode&0o170000 != 0o040000 {
		return nil, fmt.Errorf("inode %d is not a directory: %w", nid, errBadImage)
	}
	isize, size := int64(erofsCompactSize), int64(binary.LittleEndian.Uint32(ino[8:]))
	if format&1 == 1 {
		isize, size = erofsExtendedSize, int64(binary.LittleEndian.Uint64(ino[8:]))
	}
	var xsize int64
	if icount > 0 {
		xsize = 12 + (icount-1)*4 // erofs_xattr_ibody_header + shared ids/entries
	}
	blkaddr := int64(binary.LittleEndian.Uint32(ino[16:]))
	layout := (format >> 1) & 7
	var segs [][2]int64
	full := size / img.blockSize
	if layout == layoutFlatPlain {
		full = (size + img.blockSize - 1) / img.blockSize
	} else if layout != layoutFlatInline {
		return nil, fmt.Errorf("directory inode %d has layout %d: %w", nid, layout, errBadImage)
	}
	for i := range full {
		n := min(img.blockSize, size-i*img.blockSize)
		segs = append(segs, [2]int64{(blkaddr+i)*img.blockSize + 0, n})
	}
	if layout == layoutFlatInline {
		if tail := size - full*img.blockSize; tail > 0 {
			segs = append(segs, [2]int64{off + isize + xsize, tail})
		}
	}
	return segs, nil
}

// lookup returns the NID of name in directory dir and the file offset of the
// dirent's nid field.
func (img *erofsImage) lookup(dir uint64, name string) (nid uint64, at int64, err error) {
	segs, err := img.dirSegments(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range segs {
		blk := make([]byte, s[1])
		if _, err := img.f.ReadAt(blk, s[0]); err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, fmt.Errorf("read dirents: %w", err)
		}
		if len(blk) < erofsDirentSize {
			return 0, 0, fmt.Errorf("short dirent block: %w", errBadImage)
		}
		count := int(binary.LittleEndian.Uint16(blk[8:])) / erofsDirentSize
		if count == 0 || count*erofsDirentSize > len(blk) {
			return 0, 0, fmt.Errorf("dirent count: %w", errBadImage)
		}
		for i := range count {
			start := int(binary.LittleEndian.Uint16(blk[i*erofsDirentSize+8:]))
			end := len(blk)
			if i+1 < count {
				end = int(binary.LittleEndian.Uint16(blk[(i+1)*erofsDirentSize+8:]))
			}
			if start > end || end > len(blk) {
				return 0, 0, fmt.Errorf("dirent name bounds: %w", errBadImage)
			}
			if string(bytes.TrimRight(blk[start:end], "\x00")) == name {
				return binary.LittleEndian.Uint64(blk[i*erofsDirentSize:]), s[0] + int64(i*erofsDirentSize), nil
			}
		}
	}
	return 0, 0, fmt.Errorf("%q not found: %w", name, errBadImage)
}

// resolve returns the NID of absolute path p, and the file offset of the
// dirent that names it (0 for the root).
func (img *erofsImage) resolve(p string) (nid uint64, at int64, err error) {
	nid = img.rootNID
	for _, c := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if c == "" {
			continue
		}
		if nid, at, err = img.lookup(nid, c); err != nil {
			return 0, 0, fmt.Errorf("resolve %s: %w", p, err)
		}
	}
	return nid, at, nil
}

// patchHardlinks re-points the dirent of every secondary path in links at
// the inode of its primary path, turning go-erofs's per-path copies into
// real hardlinks. The secondary's own (data-less) inode stays in the image
// unreferenced; that costs 32–64 bytes per extra link.
func patchHardlinks(f *os.File, links map[string]string) error {
	if len(links) == 0 {
		return nil
	}
	img, err := openErofsImage(f)
	if err != nil {
		return err
	}
	secondaries := make([]string, 0, len(links))
	for s := range links {
		secondaries = append(secondaries, s)
	}
	sort.Strings(secondaries)
	for _, s := range secondaries {
		target, _, err := img.resolve(links[s])
		if err != nil {
			return err
		}
		_, at, err := img.resolve(s)
		if err != nil {
			return err
		}
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], target)
		if _, err := f.WriteAt(b[:], at); err != nil {
			return fmt.Errorf("patch dirent of %s: %w", s, err)
		}
	}
	return nil
}
