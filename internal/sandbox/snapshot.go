package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/snapshot"
	"github.com/msb-go/msb/internal/store"
)

// Errors of snapshot operations, tested with errors.Is.
var (
	// ErrNoUpper: the sandbox has no upper layer to snapshot (a live root,
	// or a sandbox whose layer is gone).
	ErrNoUpper = errors.New("sandbox has no upper layer to snapshot")
	// ErrImageNotCached: the image a snapshot sits on is not in the local
	// image cache.
	ErrImageNotCached = errors.New("snapshot image is not in the local cache")
	// ErrSnapshotImage: an explicit image or root that differs from the
	// snapshot's.
	ErrSnapshotImage = errors.New("a snapshot boots on its own image")
)

// Snapshots returns the home's snapshot repository.
func (m *Manager) Snapshots() snapshot.Repo { return snapshot.Repo{Home: m.Home, Store: m.Store} }

// Snapshot copies the upper layer of the stopped sandbox from into the
// snapshot name. It holds the sandbox's lock throughout, so the sandbox
// cannot start while its layer is copied.
func (m *Manager) Snapshot(ctx context.Context, from, name string, opts snapshot.CreateOptions) (snapshot.Info, error) {
	if err := home.ValidName(from); err != nil {
		return snapshot.Info{}, err
	}
	unlock, err := store.Lock(ctx, m.Home.LockPath(from))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return snapshot.Info{}, fmt.Errorf("sandbox %q: %w", from, ErrNotFound)
		}
		return snapshot.Info{}, err
	}
	defer unlock()
	sb, err := m.Store.Sandbox(ctx, from)
	if err != nil {
		return snapshot.Info{}, fmt.Errorf("sandbox %q: %w", from, err)
	}
	if sb.Status.Active() {
		return snapshot.Info{}, fmt.Errorf("snapshot of sandbox %q: %w (a running guest's disk is not consistent: run `msb stop %s` first)", from, ErrRunning, from)
	}
	cfg, err := parseConfig(sb.Config)
	if err != nil {
		return snapshot.Info{}, err
	}
	switch {
	case cfg.RootfsLive:
		return snapshot.Info{}, fmt.Errorf("snapshot of sandbox %q: %w: its root is the live directory %s (copy that directory instead)", from, ErrNoUpper, cfg.Rootfs)
	case cfg.Image == "" || cfg.ImageDigest == "":
		return snapshot.Info{}, fmt.Errorf("snapshot of sandbox %q: %w: snapshots need an image root, and its root is the directory %s", from, ErrSnapshotImage, cfg.Rootfs)
	}
	upper := m.Home.UpperPath(from)
	if _, err := os.Stat(upper); err != nil {
		return snapshot.Info{}, fmt.Errorf("snapshot of sandbox %q: %w: %w", from, ErrNoUpper, err)
	}
	return m.Snapshots().Create(ctx, name, snapshot.Source{Sandbox: from, UpperPath: upper,
		ImageReference: cfg.Image, ImageDigest: cfg.ImageDigest, Parent: cfg.Snapshot}, opts)
}

// ImportSnapshot imports the export archive at path as name, refusing it
// (before reading its data) when its image is not cached.
func (m *Manager) ImportSnapshot(ctx context.Context, path, name string, force bool) (snapshot.Info, error) {
	imgs, err := m.provisioner().images()
	if err != nil {
		return snapshot.Info{}, err
	}
	return m.Snapshots().Import(ctx, path, name, force, func(ctx context.Context, ref, digest string) error {
		return imageCached(ctx, imgs, ref, digest)
	})
}

func imageCached(ctx context.Context, imgs *image.Store, ref, digest string) error {
	if _, err := imgs.Inspect(ctx, digest); err != nil {
		if errors.Is(err, image.ErrNotFound) {
			return fmt.Errorf("%w: %s (%s): run `msb pull %s` first", ErrImageNotCached, ref, digest, ref)
		}
		return err
	}
	return nil
}

// applySnapshot resolves cfg.Snapshot (a name or id) and makes cfg boot on
// it: the snapshot's image, pinned to its manifest digest, and its upper
// size. An explicit image must name the same image.
func (m *Manager) applySnapshot(ctx context.Context, cfg *Config) (snapshot.Info, error) {
	in, err := m.Snapshots().Inspect(ctx, cfg.Snapshot)
	if err != nil {
		return snapshot.Info{}, err
	}
	img := in.Manifest.Image
	switch {
	case cfg.Rootfs != "":
		return snapshot.Info{}, fmt.Errorf("snapshot %s: %w (%s), not a root directory", cfg.Snapshot, ErrSnapshotImage, img.Reference)
	case cfg.Image != "" && cfg.Image != img.Reference && cfg.Image != img.ManifestDigest &&
		cfg.Image != img.Reference+"@"+img.ManifestDigest:
		return snapshot.Info{}, fmt.Errorf("snapshot %s: %w: it was taken on %s, not %s (leave the image out)", cfg.Snapshot, ErrSnapshotImage, img.Reference, cfg.Image)
	case cfg.UpperSizeBytes != 0 && cfg.UpperSizeBytes != in.Manifest.Upper.SizeBytes:
		return snapshot.Info{}, fmt.Errorf("snapshot %s: its upper layer is %d bytes; the size cannot be changed", cfg.Snapshot, in.Manifest.Upper.SizeBytes)
	}
	cfg.Image, cfg.ImageDigest = img.Reference, img.ManifestDigest
	cfg.UpperSizeBytes = in.Manifest.Upper.SizeBytes
	cfg.Snapshot = in.ID
	return in, nil
}

// snapshotImage fills cfg from the snapshot's cached image, never pulling:
// a tag that moved must not move the root under the snapshot's files.
func (p provisioner) snapshotImage(ctx context.Context, cfg *Config) error {
	imgs, err := p.images()
	if err != nil {
		return err
	}
	if err := imageCached(ctx, imgs, cfg.Image, cfg.ImageDigest); err != nil {
		return err
	}
	img, err := imgs.Inspect(ctx, cfg.ImageDigest)
	if err != nil {
		return err
	}
	mergeImageConfig(cfg, img)
	return nil
}

// copySnapshotUpper copies the snapshot's upper to the new sandbox's,
// sparse-aware.
func (p provisioner) copySnapshotUpper(ctx context.Context, in snapshot.Info, dst string) error {
	if err := snapshot.CopySparse(ctx, filepath.Join(in.Dir, snapshot.UpperFile), dst); err != nil {
		return fmt.Errorf("rootfs: upper from snapshot %s: %w", in.Name, err)
	}
	return nil
}
