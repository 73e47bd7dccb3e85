package rootfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// go-diskfs v1.9.4 cannot make device nodes (FileSystem.Mknod returns
// ErrNotImplemented), yet an overlay whiteout must be a character device 0:0
// (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque
// directories"). ApplyPatches therefore creates a symlink to
// whiteoutStandIn (a short target, kept inside i_block with no extents) and this file rewrites, in
// place, its inode type and its directory entry's file type, updating the
// metadata_csum checksums. Offsets are from the kernel's ext4 disk layout
// documentation (Documentation/filesystems/ext4/).

var errRawExt4 = errors.New("unexpected ext4 layout")

// whiteoutStandIn is the symlink target of a whiteout's stand-in; shorter
// than 60 bytes so ext4 stores it in i_block ("fast symlink").
const whiteoutStandIn = "msb-whiteout"

// Superblock fields (ext4 "Super Block"), offsets within the superblock.
const (
	sbOffset          = 1024
	sbFirstDataBlock  = 0x14
	sbLogBlockSize    = 0x18
	sbInodesPerGroup  = 0x28
	sbMagic           = 0x38
	sbInodeSize       = 0x58
	sbFeatureIncompat = 0x60
	sbFeatureRoCompat = 0x64
	sbUUID            = 0x68
	sbDescSize        = 0xFE
	sbChecksumSeed    = 0x270

	ext4Magic            = 0xEF53
	incompatFiletype     = 0x2
	incompatRecover      = 0x4
	incompat64bit        = 0x80
	incompatCsumSeed     = 0x2000
	roCompatMetadataCsum = 0x400
)

// Inode fields (ext4 "Index Nodes").
const (
	inMode        = 0x00
	inSizeLo      = 0x04
	inBlocksLo    = 0x1C
	inFlags       = 0x20
	inBlock       = 0x28 // i_block[15], 60 bytes
	inGeneration  = 0x64
	inSizeHigh    = 0x6C
	inBlocksHigh  = 0x74
	inChecksumLo  = 0x7C
	inExtraIsize  = 0x80
	inChecksumHi  = 0x82
	inGoodOldSize = 128

	flExtents  = 0x80000
	flInline   = 0x10000000
	ftChrdev   = 3
	tailFtCsum = 0xDE
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's crc32c_le as ext4 uses it: no pre- or
// post-inversion (hash/crc32 applies both, so undo them).
func crc32c(crc uint32, p []byte) uint32 {
	return ^crc32.Update(^crc, castagnoli, p)
}

type rawExt4 struct {
	f          io.ReaderAt
	w          io.WriterAt
	blockSize  int64
	inodeSize  int64
	perGroup   uint32
	gdtOff     int64
	descSize   int64
	is64       bool
	csum       bool
	csumSeed   uint32
	hasFtField bool
	// needsRecovery is set when the journal holds transactions not yet
	// written to their place (INCOMPAT_RECOVER).
	needsRecovery bool
}

func openRawExt4(f *os.File) (*rawExt4, error) {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, sbOffset); err != nil {
		return nil, fmt.Errorf("read superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[sbMagic:]) != ext4Magic {
		return nil, fmt.Errorf("%w: bad superblock magic", errRawExt4)
	}
	logBS := le.Uint32(sb[sbLogBlockSize:])
	if logBS > 6 {
		return nil, fmt.Errorf("%w: block size log %d", errRawExt4, logBS)
	}
	r := &rawExt4{
		f:         f,
		w:         f,
		blockSize: 1024 << logBS,
		inodeSize: int64(le.Uint16(sb[sbInodeSize:])),
		perGroup:  le.Uint32(sb[sbInodesPerGroup:]),
		descSize:  32,
	}
	incompat := le.Uint32(sb[sbFeatureIncompat:])
	r.hasFtField = incompat&incompatFiletype != 0
	r.needsRecovery = incompat&incompatRecover != 0
	if incompat&incompat64bit != 0 {
		r.is64 = true
		r.descSize = int64(le.Uint16(sb[sbDescSize:]))
	}
	if r.inodeSize < inGoodOldSize || r.inodeSize > r.blockSize || r.perGroup == 0 || r.descSize < 32 {
		return nil, fmt.Errorf("%w: inode size %d, %d inodes per group, descriptor size %d", errRawExt4, r.inodeSize, r.perGroup, r.descSize)
	}
	r.gdtOff = (int64(le.Uint32(sb[sbFirstDataBlock:])) + 1) * r.blockSize
	r.csumSeed = le.Uint32(sb[sbChecksumSeed:])
	if le.Uint32(sb[sbFeatureRoCompat:])&roCompatMetadataCsum != 0 {
		r.csum = true
		if incompat&incompatCsumSeed == 0 {
			r.csumSeed = crc32c(^uint32(0), sb[sbUUID:sbUUID+16])
		}
	}
	return r, nil
}

// inodeOffset returns the byte offset of inode ino in the image.
func (r *rawExt4) inodeOffset(ino uint32) (int64, error) {
	if ino == 0 {
		return 0, fmt.Errorf("%w: inode 0", errRawExt4)
	}
	group := int64((ino - 1) / r.perGroup)
	gd := make([]byte, r.descSize)
	if _, err := r.f.ReadAt(gd, r.gdtOff+group*r.descSize); err != nil {
		return 0, fmt.Errorf("read group descriptor %d: %w", group, err)
	}
	table := uint64(binary.LittleEndian.Uint32(gd[0x08:]))
	if r.is64 && r.descSize >= 64 {
		table |= uint64(binary.LittleEndian.Uint32(gd[0x28:])) << 32
	}
	return int64(table)*r.blockSize + int64((ino-1)%r.perGroup)*r.inodeSize, nil
}

func (r *rawExt4) readInode(ino uint32) ([]byte, int64, error) {
	off, err := r.inodeOffset(ino)
	if err != nil {
		return nil, 0, err
	}
	b := make([]byte, r.inodeSize)
	if _, err := r.f.ReadAt(b, off); err != nil {
		return nil, 0, fmt.Errorf("read inode %d: %w", ino, err)
	}
	if r.csum {
		got, want := r.inodeCsum(ino, b)
		if got != want {
			return nil, 0, fmt.Errorf("%w: inode %d checksum %#x; computed %#x", errRawExt4, ino, got, want)
		}
	}
	return b, off, nil
}

// hiFits reports whether the inode holds i_checksum_hi (ext4 "Inode
// Size": fields beyond 128 bytes exist only up to i_extra_isize).
func (r *rawExt4) hiFits(b []byte) bool {
	return r.inodeSize > inGoodOldSize && binary.LittleEndian.Uint16(b[inExtraIsize:]) >= 4
}

// inodeCsum returns the stored and the computed checksum of inode b
// (ext4 "Checksums": crc32c over inode number, generation and the inode
// with its checksum fields zeroed).
func (r *rawExt4) inodeCsum(ino uint32, b []byte) (stored, computed uint32) {
	le := binary.LittleEndian
	c := bytes.Clone(b)
	stored = uint32(le.Uint16(c[inChecksumLo:]))
	le.PutUint16(c[inChecksumLo:], 0)
	mask := uint32(0xFFFF)
	if r.hiFits(c) {
		stored |= uint32(le.Uint16(c[inChecksumHi:])) << 16
		le.PutUint16(c[inChecksumHi:], 0)
		mask = 0xFFFFFFFF
	}
	var n [4]byte
	le.PutUint32(n[:], ino)
	crc := crc32c(r.csumSeed, n[:])
	crc = crc32c(crc, c[inGeneration:inGeneration+4])
	crc = crc32c(crc, c)
	return stored, crc & mask
}

// writeInode writes inode b with its checksum. Without metadata_csum the
// kernel and e2fsck ignore the checksum fields, but go-diskfs verifies them
// on every inode it reads (seeded with s_checksum_seed as stored), so they
// are always kept valid for a later ApplyPatches.
func (r *rawExt4) writeInode(ino uint32, b []byte, off int64) error {
	_, sum := r.inodeCsum(ino, b)
	binary.LittleEndian.PutUint16(b[inChecksumLo:], uint16(sum))
	if r.hiFits(b) {
		binary.LittleEndian.PutUint16(b[inChecksumHi:], uint16(sum>>16))
	}
	if _, err := r.w.WriteAt(b, off); err != nil {
		return fmt.Errorf("write inode %d: %w", ino, err)
	}
	return nil
}

// makeWhiteout turns inode ino, a stand-in symlink named name in directory
// dirIno, into a character device 0:0 with mode 0, the form overlayfs
// creates whiteouts in.
func (r *rawExt4) makeWhiteout(dirIno uint32, name string, ino uint32) error {
	le := binary.LittleEndian
	b, off, err := r.readInode(ino)
	if err != nil {
		return err
	}
	size := uint64(le.Uint32(b[inSizeLo:])) | uint64(le.Uint32(b[inSizeHigh:]))<<32
	if le.Uint16(b[inMode:])&sIFMT != sIFLNK || size != uint64(len(whiteoutStandIn)) ||
		le.Uint32(b[inFlags:])&(flExtents|flInline) != 0 ||
		string(b[inBlock:inBlock+len(whiteoutStandIn)]) != whiteoutStandIn {
		return fmt.Errorf("%w: inode %d is not the whiteout stand-in", errRawExt4, ino)
	}
	le.PutUint16(b[inMode:], sIFCHR)
	le.PutUint32(b[inSizeLo:], 0)
	le.PutUint32(b[inSizeHigh:], 0)
	// A device number lives in i_block (0:0 here); all of i_block must be
	// zero otherwise, and a device has no blocks.
	clear(b[inBlock : inBlock+60])
	le.PutUint32(b[inBlocksLo:], 0)
	le.PutUint16(b[inBlocksHigh:], 0)
	if err := r.setDirentType(dirIno, name, ino, ftChrdev); err != nil {
		return err
	}
	return r.writeInode(ino, b, off)
}

// setDirentType sets the file type of the entry name -> ino in directory
// dirIno and updates the block's checksum tail.
func (r *rawExt4) setDirentType(dirIno uint32, name string, ino uint32, ft byte) error {
	if !r.hasFtField {
		return nil // no file type in directory entries to keep in sync
	}
	le := binary.LittleEndian
	d, _, err := r.readInode(dirIno)
	if err != nil {
		return err
	}
	if le.Uint16(d[inMode:])&sIFMT != sIFDIR {
		return fmt.Errorf("%w: inode %d is not a directory", errRawExt4, dirIno)
	}
	if le.Uint32(d[inFlags:])&flExtents == 0 {
		return fmt.Errorf("%w: directory inode %d does not use extents", ErrUnsupported, dirIno)
	}
	var nodes int
	blocks, err := r.extentBlocks(d[inBlock:inBlock+60], 0, &nodes)
	if err != nil {
		return fmt.Errorf("directory inode %d: %w", dirIno, err)
	}
	blk := make([]byte, r.blockSize)
	for _, pb := range blocks {
		off := int64(pb) * r.blockSize
		if _, err := r.f.ReadAt(blk, off); err != nil {
			return fmt.Errorf("read directory block %d: %w", pb, err)
		}
		pos, ok := findDirent(blk, name, ino)
		if !ok {
			continue
		}
		blk[pos+7] = ft
		if r.csum {
			if err := r.setDirBlockCsum(blk, dirIno, le.Uint32(d[inGeneration:])); err != nil {
				return err
			}
		}
		if _, err := r.w.WriteAt(blk, off); err != nil {
			return fmt.Errorf("write directory block %d: %w", pb, err)
		}
		return nil
	}
	return fmt.Errorf("%w: no entry %q -> %d in directory inode %d", errRawExt4, name, ino, dirIno)
}

// findDirent returns the offset of the linear directory entry name -> ino
// in blk (ext4 "Linear (Classic) Directories").
func findDirent(blk []byte, name string, ino uint32) (int, bool) {
	le := binary.LittleEndian
	for pos := 0; pos+8 <= len(blk); {
		recLen := int(le.Uint16(blk[pos+4:]))
		nameLen := int(blk[pos+6])
		if recLen < 8 || pos+recLen > len(blk) || 8+nameLen > recLen {
			return 0, false
		}
		if le.Uint32(blk[pos:]) == ino && string(blk[pos+8:pos+8+nameLen]) == name {
			return pos, true
		}
		pos += recLen
	}
	return 0, false
}

// setDirBlockCsum updates the checksum in the 12-byte tail of a linear
// directory block (ext4 "Checksums": crc32c over directory inode number,
// generation and the block up to the tail).
func (r *rawExt4) setDirBlockCsum(blk []byte, dirIno, gen uint32) error {
	le := binary.LittleEndian
	t := len(blk) - 12
	if le.Uint32(blk[t:]) != 0 || le.Uint16(blk[t+4:]) != 12 || blk[t+6] != 0 || blk[t+7] != tailFtCsum {
		return fmt.Errorf("%w: directory block of inode %d has no checksum tail", errRawExt4, dirIno)
	}
	var n [8]byte
	le.PutUint32(n[0:], dirIno)
	le.PutUint32(n[4:], gen)
	le.PutUint32(blk[t+8:], crc32c(crc32c(r.csumSeed, n[:]), blk[:t]))
	return nil
}

// maxExtentDepth bounds the walk; ext4 trees are at most 5 deep. An
// upper image may have been written by a guest, so the number of blocks
// listed is bounded too (a directory of maxDirBlocks 4K blocks holds
// millions of entries).
const (
	maxExtentDepth = 5
	maxDirBlocks   = 1 << 16
	maxExtentNodes = 1 << 12
)

// extentBlocks lists the physical blocks an extent tree node maps, in
// logical order (ext4 "Extent Tree").
// nodes counts the index blocks read, so that a tree whose index entries
// all point at one block cannot make the walk exponential.
func (r *rawExt4) extentBlocks(node []byte, level int, nodes *int) ([]uint64, error) {
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node[0:]) != 0xF30A {
		return nil, fmt.Errorf("%w: bad extent header", errRawExt4)
	}
	entries := int(le.Uint16(node[2:]))
	depth := int(le.Uint16(node[6:]))
	if level > maxExtentDepth || 12+12*entries > len(node) {
		return nil, fmt.Errorf("%w: bad extent node", errRawExt4)
	}
	var out []uint64
	for i := range entries {
		e := node[12+12*i : 24+12*i]
		if depth == 0 {
			n := uint64(le.Uint16(e[4:]))
			if n > 32768 {
				n -= 32768 // uninitialized extent: its blocks read as zeros
			}
			start := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if uint64(len(out))+n > maxDirBlocks {
				return nil, fmt.Errorf("%w: directory over %d blocks", ErrTooLarge, maxDirBlocks)
			}
			for j := range n {
				out = append(out, start+j)
			}
			continue
		}
		child := uint64(le.Uint32(e[4:])) | uint64(le.Uint16(e[8:]))<<32
		if *nodes++; *nodes > maxExtentNodes {
			return nil, fmt.Errorf("%w: directory extent tree over %d nodes", ErrTooLarge, maxExtentNodes)
		}
		buf := make([]byte, r.blockSize)
		if _, err := r.f.ReadAt(buf, int64(child)*r.blockSize); err != nil {
			return nil, fmt.Errorf("read extent block %d: %w", child, err)
		}
		sub, err := r.extentBlocks(buf, level+1, nodes)
		if err != nil {
			return nil, err
		}
		if len(out)+len(sub) > maxDirBlocks {
			return nil, fmt.Errorf("%w: directory over %d blocks", ErrTooLarge, maxDirBlocks)
		}
		out = append(out, sub...)
	}
	return out, nil
}
