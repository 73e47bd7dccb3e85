package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/store"
)

// rootfsPath is cache/images/<hex>.erofs for manifest sha256:<hex>.
func (s *Store) rootfsPath(manifest string) (string, error) {
	alg, hex, err := splitDigest(manifest)
	if err != nil {
		return "", err
	}
	if alg != "sha256" {
		hex = alg + "-" + hex
	}
	return filepath.Join(s.home.ImagesDir(), hex+".erofs"), nil
}

// Rootfs returns the path of the image's flattened read-only EROFS, the
// sandbox's /dev/vda. It is built once per manifest from the cached layer
// blobs with rootfs.BuildFromLayers and cached; concurrent callers (threads
// or processes) wait on a per-manifest file lock and share the result.
// Every layer blob is re-hashed before use; one that no longer matches is
// deleted and fetched again from img.Ref's registry (or, without network,
// the error wraps ErrDigestMismatch). The uncompressed stream of each layer
// must match its diff_id, or nothing is cached.
func (s *Store) Rootfs(ctx context.Context, img *Image) (string, error) {
	dst, err := s.rootfsPath(img.ManifestDigest)
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
		return dst, nil
	}
	if err := home.EnsureDir(s.home.ImagesDir()); err != nil {
		return "", err
	}
	unlock, err := store.Lock(ctx, dst+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() {
		return dst, nil
	}
	si, err := s.db.ImageByDigest(ctx, img.ManifestDigest)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("rootfs %s: %w", img.ManifestDigest, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("rootfs %s: %w", img.ManifestDigest, err)
	}
	if err := s.build(ctx, img.Ref, si, dst); err != nil {
		return "", fmt.Errorf("rootfs %s: %w", img.ManifestDigest, err)
	}
	return dst, nil
}

func (s *Store) build(ctx context.Context, ref string, si store.Image, dst string) error {
	for _, l := range si.Layers {
		if err := s.verifyBlob(l.BlobDigest); err != nil {
			if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrNotFound) {
				return err
			}
			if ferr := s.refetch(ctx, ref, l); ferr != nil {
				return fmt.Errorf("%w; fetching it again: %w", err, ferr)
			}
		}
	}
	layers := make([]*layerReader, len(si.Layers))
	readers := make([]io.Reader, len(si.Layers))
	for i, l := range si.Layers {
		p, err := s.blobPath(l.BlobDigest)
		if err != nil {
			return err
		}
		alg, _, err := splitDigest(l.DiffID)
		if err != nil {
			return err
		}
		layers[i] = &layerReader{path: p, diffID: l.DiffID, h: newHash(alg), alg: alg}
		readers[i] = layers[i]
	}
	defer func() {
		for _, l := range layers {
			l.close()
		}
	}()
	tmp := dst + ".build"
	defer os.Remove(tmp)
	if err := rootfs.BuildFromLayersLimited(ctx, readers, tmp, s.opts.Limits); err != nil {
		name := ref
		if name == "" {
			name = si.Manifest.Digest
		}
		return fmt.Errorf("image %s: %w", name, err)
	}
	// tar readers stop at the end-of-archive blocks; the diff_id covers the
	// whole stream, so drain it before checking.
	for i, l := range layers {
		if _, err := io.Copy(io.Discard, l); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if got := l.sum(); got != l.diffID {
			return fmt.Errorf("layer %d uncompresses to %s, config says %s: %w", i, got, l.diffID, ErrDigestMismatch)
		}
	}
	return os.Rename(tmp, dst)
}

// refetch downloads layer l again from the registry ref names.
func (s *Store) refetch(ctx context.Context, ref string, l store.Layer) error {
	r, err := ParseReference(ref)
	if err != nil {
		return fmt.Errorf("no registry to fetch from: %w", err)
	}
	var errs []error
	for _, src := range s.sources(r) {
		repo, err := s.connect(ctx, src, "pull")
		if err == nil {
			_, err = s.ensureBlob(ctx, l.BlobDigest, l.CompressedSizeBytes, repo.blobFetcher(l.BlobDigest, l.CompressedSizeBytes), nil)
		}
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// layerReader opens a layer blob on first Read (so only one decompressor is
// live at a time), decompresses it by its magic number (gzip, zstd, or a
// plain tar, whatever the media type claims), and hashes what it yields.
type layerReader struct {
	path   string
	diffID string
	alg    string
	h      hash.Hash
	f      *os.File
	r      io.Reader
	zr     *zstd.Decoder
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func (l *layerReader) open() error {
	f, err := os.Open(l.path)
	if err != nil {
		return err
	}
	l.f = f
	br := bufio.NewReader(f)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		l.r = zr
	case bytes.HasPrefix(magic, zstdMagic):
		// A window bigger than 128 MiB is refused: hostile input must not
		// choose our memory use.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		l.zr = zr
		l.r = zr
	default:
		l.r = br
	}
	return nil
}

func (l *layerReader) Read(p []byte) (int, error) {
	if l.r == nil {
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	n, err := l.r.Read(p)
	l.h.Write(p[:n])
	return n, err
}

func (l *layerReader) sum() string { return fmt.Sprintf("%s:%x", l.alg, l.h.Sum(nil)) }

func (l *layerReader) close() {
	if l.zr != nil {
		l.zr.Close()
	}
	if l.f != nil {
		l.f.Close()
	}
}
