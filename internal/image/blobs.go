package image

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/store"
)

// blobAttempts is how many times ensureBlob fetches a blob before giving
// up: a digest mismatch restarts from zero, a broken transfer resumes.
const blobAttempts = 3

// progressInterval throttles LayerDownloadProgress events per blob.
const progressInterval = 100 * time.Millisecond

// splitDigest validates d and returns its algorithm and hex parts.
func splitDigest(d string) (alg, hex string, err error) {
	if err := checkDigest(d); err != nil {
		return "", "", fmt.Errorf("%w %q: %w", ErrUnsupported, d, err)
	}
	alg, hex, _ = strings.Cut(d, ":")
	return alg, hex, nil
}

func newHash(alg string) hash.Hash {
	if alg == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// blobPath is cache/blobs/<alg>/<hex>.
func (s *Store) blobPath(digest string) (string, error) {
	alg, hex, err := splitDigest(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.home.BlobsDir(), alg, hex), nil
}

func (s *Store) hasBlob(digest string) bool {
	p, err := s.blobPath(digest)
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// fetchFunc opens a blob's content starting at offset. It returns the
// offset the body really starts at: 0 when the source ignored the request
// to resume.
type fetchFunc func(ctx context.Context, offset int64) (body io.ReadCloser, start int64, err error)

// ensureBlob makes digest (of size bytes) present in the blob store. A
// missing blob is fetched into cache/tmp/<alg>-<hex>.part under a per-blob
// file lock, so concurrent pulls (threads or processes) download it once:
// the second waits and then finds it stored. A .part left by an interrupted
// pull is resumed. The content is verified before it is renamed into place;
// on a mismatch it is deleted and fetched again from zero. It reports
// whether anything was fetched.
func (s *Store) ensureBlob(ctx context.Context, digest string, size int64, fetch fetchFunc, progress func(cur int64)) (bool, error) {
	final, err := s.blobPath(digest)
	if err != nil {
		return false, err
	}
	if s.hasBlob(digest) {
		return false, nil
	}
	alg, hex, _ := splitDigest(digest)
	for _, d := range []string{filepath.Dir(final), s.home.TmpDir()} {
		if err := home.EnsureDir(d); err != nil {
			return false, err
		}
	}
	unlock, err := store.Lock(ctx, filepath.Join(s.home.TmpDir(), alg+"-"+hex+".lock"))
	if err != nil {
		return false, err
	}
	defer unlock()
	if s.hasBlob(digest) {
		return false, nil
	}
	if err := rootfs.CheckFree(s.home.TmpDir(), size, s.opts.Limits.MinFree); err != nil {
		return false, fmt.Errorf("fetch blob %s: %w", digest, err)
	}
	partPath := filepath.Join(s.home.TmpDir(), alg+"-"+hex+".part")
	part, err := os.OpenFile(partPath, os.O_RDWR|os.O_CREATE, home.FileMode)
	if err != nil {
		return false, err
	}
	defer part.Close()

	var lastErr error
	for attempt := 0; attempt < blobAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		err := s.fetchInto(ctx, part, alg, digest, size, fetch, progress)
		if err == nil {
			if err := part.Sync(); err != nil {
				return false, err
			}
			if err := os.Rename(partPath, final); err != nil {
				return false, err
			}
			return true, nil
		}
		lastErr = err
		if errors.Is(err, ErrDigestMismatch) {
			// Never keep bytes that hashed wrong: the next attempt starts
			// from zero.
			if terr := part.Truncate(0); terr != nil {
				return false, terr
			}
		}
		if ctx.Err() != nil {
			break
		}
		s.log.Debug("blob fetch failed, retrying", "digest", digest, "attempt", attempt+1, "err", err)
	}
	return false, fmt.Errorf("fetch blob %s: %w", digest, lastErr)
}

// fetchInto continues part (whose current size is what an earlier attempt
// got) with fetch and verifies the whole against digest.
func (s *Store) fetchInto(ctx context.Context, part *os.File, alg, digest string, size int64, fetch fetchFunc, progress func(int64)) error {
	fi, err := part.Stat()
	if err != nil {
		return err
	}
	have := fi.Size()
	if have >= size {
		have = 0 // complete but unverified, or too long: start over
	}
	h := newHash(alg)
	if have > 0 {
		if _, err := io.Copy(h, io.NewSectionReader(part, 0, have)); err != nil {
			return err
		}
	}
	body, start, err := fetch(ctx, have)
	if err != nil {
		return err
	}
	defer body.Close()
	if start != have {
		if start != 0 {
			return fmt.Errorf("source resumed at %d, asked for %d", start, have)
		}
		h.Reset()
		have = 0
	}
	if err := part.Truncate(have); err != nil {
		return err
	}
	if _, err := part.Seek(have, io.SeekStart); err != nil {
		return err
	}
	pw := &progressWriter{cur: have, fn: progress}
	// One byte more than expected is read so an oversized body is caught
	// without writing an unbounded amount.
	n, err := io.Copy(io.MultiWriter(part, h, pw), io.LimitReader(body, size-have+1))
	pw.flush()
	if err != nil {
		return err
	}
	if got := have + n; got != size {
		if got < size {
			return fmt.Errorf("short body: %d of %d bytes: %w", got, size, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("more than the %d bytes declared: %w", size, ErrDigestMismatch)
	}
	if got := alg + ":" + fmt.Sprintf("%x", h.Sum(nil)); got != digest {
		return fmt.Errorf("content hashes to %s: %w", got, ErrDigestMismatch)
	}
	return nil
}

// progressWriter reports the running byte count at most every
// progressInterval.
type progressWriter struct {
	cur  int64
	last time.Time
	fn   func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.cur += int64(len(b))
	if p.fn != nil && time.Since(p.last) >= progressInterval {
		p.last = time.Now()
		p.fn(p.cur)
	}
	return len(b), nil
}

func (p *progressWriter) flush() {
	if p.fn != nil {
		p.fn(p.cur)
	}
}

// verifyBlob re-hashes a stored blob; a blob that no longer matches its
// name (disk corruption, tampering) is deleted and ErrDigestMismatch
// returned.
func (s *Store) verifyBlob(digest string) error {
	p, err := s.blobPath(digest)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	alg, _, _ := splitDigest(digest)
	h := newHash(alg)
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verify blob %s: %w", digest, err)
	}
	if got := alg + ":" + fmt.Sprintf("%x", h.Sum(nil)); got != digest {
		_ = os.Remove(p)
		return fmt.Errorf("blob %s hashes to %s, deleted: %w", digest, got, ErrDigestMismatch)
	}
	return nil
}

// readSmallBlob reads a stored blob of at most limit bytes (configs).
func (s *Store) readSmallBlob(digest string, limit int64) ([]byte, error) {
	p, err := s.blobPath(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s larger than %d bytes: %w", digest, limit, ErrUnsupported)
	}
	return b, nil
}
