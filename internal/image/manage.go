package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/msb-go/msb/internal/store"
)

// List returns every tagged image, ordered by reference.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	refs, err := s.db.ImageRefs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(refs))
	for _, r := range refs {
		si, err := s.db.ImageByRef(ctx, r.Reference)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *fromStore(r.Reference, si))
	}
	return out, nil
}

// Inspect returns the cached image ref names (a reference, or a manifest
// digest "sha256:…"), or an error wrapping ErrNotFound. It never touches
// the network.
func (s *Store) Inspect(ctx context.Context, ref string) (*Image, error) {
	if checkDigest(ref) == nil {
		si, err := s.db.ImageByDigest(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		return fromStore("", si), nil
	}
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	return s.lookup(ctx, r)
}

// Remove untags ref. When no other reference and no sandbox uses its
// manifest any more, the manifest record and its EROFS image go too; blobs
// stay until Prune. An image a sandbox uses is refused with ErrInUse unless
// force, which removes only the reference (the sandbox keeps its image).
func (s *Store) Remove(ctx context.Context, ref string, force bool) error {
	img, err := s.Inspect(ctx, ref)
	if err != nil {
		return fmt.Errorf("remove %s: %w", ref, err)
	}
	users, err := s.db.ManifestUsers(ctx, img.ManifestDigest)
	if err != nil {
		return fmt.Errorf("remove %s: %w", ref, err)
	}
	for i, u := range users {
		if name, ok := strings.CutPrefix(u, "snapshot:"); ok {
			users[i] = "snapshot " + name
		} else {
			users[i] = "sandbox " + u
		}
	}
	if len(users) > 0 && !force {
		return fmt.Errorf("remove %s: used by %s (use --force to untag anyway): %w", ref, strings.Join(users, ", "), ErrInUse)
	}
	if img.Ref != "" {
		if err := s.db.DeleteImageRef(ctx, img.Ref); err != nil {
			return fmt.Errorf("remove %s: %w", ref, err)
		}
	} else {
		refs, err := s.db.ImageRefs(ctx)
		if err != nil {
			return fmt.Errorf("remove %s: %w", ref, err)
		}
		for _, r := range refs {
			if r.ManifestDigest == img.ManifestDigest {
				if err := s.db.DeleteImageRef(ctx, r.Reference); err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("remove %s: %w", ref, err)
				}
			}
		}
	}
	if _, err := s.dropUnreferenced(ctx, img.ManifestDigest); err != nil {
		return fmt.Errorf("remove %s: %w", ref, err)
	}
	return nil
}

// dropUnreferenced deletes unreferenced manifests (only the one named by
// only, unless it is "") with their EROFS images and config blobs, and
// returns the bytes freed.
func (s *Store) dropUnreferenced(ctx context.Context, only string) (int64, error) {
	ms, err := s.db.UnreferencedManifests(ctx)
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, m := range ms {
		if only != "" && m.Digest != only {
			continue
		}
		err := s.db.DeleteManifest(ctx, m.Digest)
		if errors.Is(err, store.ErrInUse) || errors.Is(err, store.ErrNotFound) {
			continue // a sandbox or another process got there first
		}
		if err != nil {
			return freed, err
		}
		if p, err := s.rootfsPath(m.Digest); err == nil {
			freed += removeFile(p)
			freed += removeFile(p + ".lock")
		}
		if p, err := s.blobPath(m.ConfigDigest); err == nil {
			freed += removeFile(p)
		}
	}
	return freed, nil
}

// Prune deletes what no tagged image and no sandbox needs: unreferenced
// manifests with their EROFS images and configs, layers no manifest lists
// with their blobs, and partial downloads no pull is working on. It returns
// the bytes freed.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	freed, err := s.dropUnreferenced(ctx, "")
	if err != nil {
		return freed, fmt.Errorf("prune: %w", err)
	}
	layers, err := s.db.UnusedLayers(ctx)
	if err != nil {
		return freed, fmt.Errorf("prune: %w", err)
	}
	for _, l := range layers {
		err := s.db.DeleteLayer(ctx, l.DiffID)
		if errors.Is(err, store.ErrInUse) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return freed, fmt.Errorf("prune: %w", err)
		}
		if p, err := s.blobPath(l.BlobDigest); err == nil {
			freed += removeFile(p)
		}
	}
	n, err := s.pruneParts(ctx)
	freed += n
	if err != nil {
		return freed, fmt.Errorf("prune: %w", err)
	}
	return freed, nil
}

// pruneParts removes .part files whose blob lock is free (no pull is
// writing them), and those free lock files. Deleting a lock file is safe:
// store.Lock notices when the file it locked was unlinked and retries.
func (s *Store) pruneParts(ctx context.Context) (int64, error) {
	ents, err := os.ReadDir(s.home.TmpDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".part")
		if !ok {
			base, ok = strings.CutSuffix(e.Name(), ".lock")
		}
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return freed, err
		}
		lock := filepath.Join(s.home.TmpDir(), base+".lock")
		unlock, err := store.TryLock(lock)
		if err != nil {
			continue // busy: a pull owns it
		}
		freed += removeFile(filepath.Join(s.home.TmpDir(), base+".part"))
		_ = os.Remove(lock)
		_ = unlock()
	}
	return freed, nil
}

// removeFile removes path and returns its size, 0 if it was not there.
func removeFile(path string) int64 {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0
	}
	if os.Remove(path) != nil {
		return 0
	}
	return fi.Size()
}
