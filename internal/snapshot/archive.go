package snapshot

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// The export archive is a tar stream (zstd-compressed unless exported with
// plain set) of exactly three regular-file entries, in this order:
//
//	manifest.json        the manifest, canonical JSON (see Canonical)
//	upper.ext4.extents   the upper's layout, binary, big-endian:
//	                       "msb-extents-v1\n" (15 bytes)
//	                       size    u64   logical size of upper.ext4
//	                       count   u64   number of extents
//	                       count × {offset u64, length u64}
//	upper.ext4.data      the extents' bytes, concatenated in order
//
// Extents are the maximal runs of non-zero 4096-byte blocks (the same
// blocks the digest hashes): offsets are multiples of 4096, lengths too
// except for an extent that ends at size, extents are sorted and do not
// overlap. Everything else of the upper is zero and is left as holes on
// import. A 4 GiB upper holding 30 MiB thus exports as about 30 MiB before
// compression, and no reader or writer ever handles the zeros.
//
// Plain tar tools can list and extract the entries; rebuilding the image
// from them needs msb (or the few lines of code the layout implies).
const (
	entryManifest = "manifest.json"
	entryExtents  = "upper.ext4.extents"
	entryData     = "upper.ext4.data"
	extentsMagic  = "msb-extents-v1\n"
)

// maxExtents bounds the extent table an archive may declare (16 MiB of
// table); an upper written by a real guest has a few thousand.
const maxExtents = 1 << 20

// ErrBadArchive is an archive that is not a snapshot export: wrong or extra
// entries, an inconsistent extent table, truncated or oversized data.
var ErrBadArchive = errors.New("bad snapshot archive")

// ErrDigestMismatch is an upper whose bytes do not hash to the digest its
// manifest records.
var ErrDigestMismatch = errors.New("upper digest does not match the manifest")

type extent struct{ off, n int64 }

// extents returns the maximal runs of non-zero blocks of f and, from the
// same pass, the file's v1 digest.
func extents(ctx context.Context, f *os.File, size int64) ([]extent, string, error) {
	var out []extent
	d := newDigester(size)
	err := scanBlocks(ctx, f, size, func(off int64, b []byte) error {
		d.block(off, b)
		if k := len(out) - 1; k >= 0 && out[k].off+out[k].n == off {
			out[k].n += int64(len(b))
		} else {
			out = append(out, extent{off, int64(len(b))})
		}
		return nil
	})
	return out, d.sum(), err
}

// WriteArchive writes the snapshot in dir (manifest.json and upper.ext4) to
// w in the export format, zstd-compressed unless plain. It re-hashes the
// upper on the way and fails with ErrDigestMismatch rather than export a
// corrupt snapshot.
func WriteArchive(ctx context.Context, dir string, w io.Writer, plain bool) error {
	m, raw, err := readManifest(dir)
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(dir, UpperFile))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	exts, digest, err := extents(ctx, f, m.Upper.SizeBytes)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if digest != m.Upper.Integrity.Digest {
		return fmt.Errorf("export %s: %w (got %s)", dir, ErrDigestMismatch, digest)
	}
	var zw *zstd.Encoder
	if !plain {
		if zw, err = zstd.NewWriter(w); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		w = zw
	}
	tw := tar.NewWriter(w)
	add := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600,
			ModTime: m.CreatedAt, Format: tar.FormatPAX})
	}
	if err := add(entryManifest, int64(len(raw))); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := tw.Write(raw); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	table := encodeExtents(m.Upper.SizeBytes, exts)
	if err := add(entryExtents, int64(len(table))); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := tw.Write(table); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var total int64
	for _, e := range exts {
		total += e.n
	}
	if err := add(entryData, total); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for _, e := range exts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if _, err := io.Copy(tw, io.NewSectionReader(f, e.off, e.n)); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}

func encodeExtents(size int64, exts []extent) []byte {
	b := make([]byte, 0, len(extentsMagic)+16+16*len(exts))
	b = append(b, extentsMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	b = binary.BigEndian.AppendUint64(b, uint64(len(exts)))
	for _, e := range exts {
		b = binary.BigEndian.AppendUint64(b, uint64(e.off))
		b = binary.BigEndian.AppendUint64(b, uint64(e.n))
	}
	return b
}

// decodeExtents parses and checks an extent table against the manifest's
// size; it returns the extents and the total bytes they hold.
func decodeExtents(b []byte, size int64) ([]extent, int64, error) {
	bad := func(format string, a ...any) ([]extent, int64, error) {
		return nil, 0, fmt.Errorf("%w: extents: %s", ErrBadArchive, fmt.Sprintf(format, a...))
	}
	if len(b) < len(extentsMagic)+16 || string(b[:len(extentsMagic)]) != extentsMagic {
		return bad("bad header")
	}
	b = b[len(extentsMagic):]
	if got := binary.BigEndian.Uint64(b); got != uint64(size) {
		return bad("size %d, manifest says %d", got, size)
	}
	count := binary.BigEndian.Uint64(b[8:])
	b = b[16:]
	if count > maxExtents || uint64(len(b)) != count*16 {
		return bad("count %d does not match a table of %d bytes", count, len(b))
	}
	exts := make([]extent, 0, count)
	var end, total int64
	for i := range int(count) {
		off, n := binary.BigEndian.Uint64(b[16*i:]), binary.BigEndian.Uint64(b[16*i+8:])
		switch {
		case n == 0 || off > uint64(size) || n > uint64(size)-off:
			return bad("extent %d [%d, +%d) outside [0, %d)", i, off, n, size)
		case int64(off) < end:
			return bad("extent %d at %d overlaps or is out of order", i, off)
		case off%BlockSize != 0 || (n%BlockSize != 0 && int64(off+n) != size):
			return bad("extent %d [%d, +%d) not block-aligned", i, off, n)
		}
		exts = append(exts, extent{int64(off), int64(n)})
		end = int64(off + n)
		total += int64(n)
	}
	return exts, total, nil
}

// zstdMagic starts every zstd frame (RFC 8878 §3.1.1).
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Bounds on an archive's decoder: its window and memory, so a hostile
// frame header cannot make the decoder allocate gigabytes.
const maxZstdMemory = 64 << 20

// ReadArchive reads an export archive (zstd-compressed or plain tar) from
// r, which is hostile input. It parses the manifest first and passes it to
// check (which may refuse it, e.g. for a missing image) before reading any
// data, writes the upper to upperPath (created 0600, holes kept: zero
// blocks are never written) and returns the manifest once the upper's
// bytes match its integrity digest. On error upperPath may hold partial
// data; the caller removes it.
func ReadArchive(ctx context.Context, r io.Reader, upperPath string, check func(Manifest) error) (Manifest, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(len(zstdMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	var src io.Reader = br
	if bytes.Equal(head, zstdMagic) {
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxZstdMemory),
			zstd.WithDecoderMaxWindow(maxZstdMemory/2))
		if err != nil {
			return Manifest{}, fmt.Errorf("import: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	tr := tar.NewReader(src)
	next := func(name string, maxSize int64) (*tar.Header, error) {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: missing %s", ErrBadArchive, name)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		switch {
		case hdr.Name != name:
			return nil, fmt.Errorf("%w: entry %q where %s belongs", ErrBadArchive, hdr.Name, name)
		case hdr.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("%w: %s is not a regular file (type %q)", ErrBadArchive, name, hdr.Typeflag)
		case hdr.Size < 0 || hdr.Size > maxSize:
			return nil, fmt.Errorf("%w: %s is %d bytes, at most %d", ErrBadArchive, name, hdr.Size, maxSize)
		}
		return hdr, nil
	}
	readSmall := func(hdr *tar.Header) ([]byte, error) {
		b := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, b); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadArchive, hdr.Name, err)
		}
		return b, nil
	}

	hdr, err := next(entryManifest, maxManifestBytes)
	if err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	raw, err := readSmall(hdr)
	if err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	if check != nil {
		if err := check(m); err != nil {
			return Manifest{}, err
		}
	}
	if hdr, err = next(entryExtents, int64(len(extentsMagic))+16+16*maxExtents); err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	table, err := readSmall(hdr)
	if err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	exts, total, err := decodeExtents(table, m.Upper.SizeBytes)
	if err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	if hdr, err = next(entryData, total); err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	if hdr.Size != total {
		return Manifest{}, fmt.Errorf("import: %w: %s is %d bytes, the extents hold %d", ErrBadArchive, entryData, hdr.Size, total)
	}
	digest, err := writeUpper(ctx, tr, upperPath, m.Upper.SizeBytes, exts)
	if err != nil {
		return Manifest{}, fmt.Errorf("import: %w", err)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("entries after " + entryData)
		}
		return Manifest{}, fmt.Errorf("import: %w: %w", ErrBadArchive, err)
	}
	if digest != m.Upper.Integrity.Digest {
		return Manifest{}, fmt.Errorf("import: %w (manifest %s, data %s)", ErrDigestMismatch, m.Upper.Integrity.Digest, digest)
	}
	return m, nil
}

// writeUpper creates path as a sparse file of size and fills exts from r,
// skipping zero blocks so they stay holes; it returns the v1 digest of
// what it wrote.
func writeUpper(ctx context.Context, r io.Reader, path string, size int64, exts []extent) (string, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return "", err
	}
	d := newDigester(size)
	buf := make([]byte, BlockSize)
	for _, e := range exts {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		for off := e.off; off < e.off+e.n; off += BlockSize {
			b := buf[:min(BlockSize, e.off+e.n-off)]
			if _, err := io.ReadFull(r, b); err != nil {
				return "", fmt.Errorf("%w: %s: %w", ErrBadArchive, entryData, err)
			}
			if isZero(b) {
				continue
			}
			d.block(off, b)
			if _, err := f.WriteAt(b, off); err != nil {
				return "", err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return d.sum(), f.Close()
}

// readManifest reads and parses dir/manifest.json, returning it with its
// canonical bytes.
func readManifest(dir string) (Manifest, []byte, error) {
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("read manifest %s: %w", dir, err)
	}
	raw, err := m.Canonical()
	if err != nil {
		return Manifest{}, nil, err
	}
	return m, raw, nil
}
