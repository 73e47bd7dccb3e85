package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/store"
)

// Errors callers test with errors.Is.
var (
	ErrNotFound = store.ErrNotFound
	ErrExists   = store.ErrExists
	// ErrInUse: another snapshot names this one as its parent.
	ErrInUse = store.ErrInUse
)

// Repo is the snapshots of one msb home: the directories under
// home.SnapshotsDir and their rows in the store's index. Methods are safe
// for concurrent use to the extent the store is; two creates of one name
// race to a single winner (the directory rename).
type Repo struct {
	Home  home.Home
	Store *store.Store
}

// Info is an indexed snapshot with its manifest.
type Info struct {
	Name string
	// ID is the snapshot id, "sha256:" + SHA-256 of the canonical manifest.
	ID       string
	Manifest Manifest
	// Dir holds manifest.json and upper.ext4.
	Dir string
	// AllocatedBytes is the disk the upper uses (st_blocks), far below its
	// logical size for a sparse upper.
	AllocatedBytes int64
}

// Source is what Create needs to know of the sandbox being snapshotted.
type Source struct {
	Sandbox        string
	UpperPath      string
	ImageReference string
	ImageDigest    string
	Parent         string // the id of the snapshot the sandbox came from
}

// CreateOptions are Create's optional settings.
type CreateOptions struct {
	Labels map[string]string
	// Force replaces an existing snapshot of the same name.
	Force bool
}

// Create copies src's upper (sparse-aware) into snapshots/<name>/, writes
// its manifest and indexes it. The caller guarantees the sandbox is
// stopped and stays so (it holds the sandbox's lock).
func (r Repo) Create(ctx context.Context, name string, src Source, opts CreateOptions) (Info, error) {
	if err := home.ValidName(name); err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	for k, v := range opts.Labels {
		if err := ValidLabel(k, v); err != nil {
			return Info{}, fmt.Errorf("snapshot: %w", err)
		}
	}
	if err := r.checkFree(ctx, name, opts.Force); err != nil {
		return Info{}, err
	}
	stage, err := r.stageDir(name)
	if err != nil {
		return Info{}, err
	}
	defer os.RemoveAll(stage)
	upper := filepath.Join(stage, UpperFile)
	if err := CopySparse(ctx, src.UpperPath, upper); err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	fi, err := os.Stat(upper)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	digest, err := Digest(ctx, upper)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	m := Manifest{Schema: SchemaVersion, Format: FormatRaw, FSType: FSTypeExt4,
		Image:     Image{Reference: src.ImageReference, ManifestDigest: src.ImageDigest},
		Parent:    src.Parent,
		CreatedAt: time.Now().UTC(), Labels: opts.Labels,
		Upper: Upper{File: UpperFile, SizeBytes: fi.Size(),
			Integrity: Integrity{Algorithm: DigestAlgorithm, Digest: digest}},
		SourceSandbox: src.Sandbox}
	return r.commit(ctx, name, stage, m, opts.Force)
}

// Import reads an export archive from the file at path (hostile input)
// and indexes it as name. haveImage is asked, before any data is read,
// whether the manifest's image is in the local cache; its error refuses the
// import.
func (r Repo) Import(ctx context.Context, path, name string, force bool, haveImage func(ctx context.Context, ref, digest string) error) (Info, error) {
	if err := home.ValidName(name); err != nil {
		return Info{}, fmt.Errorf("import: %w", err)
	}
	if err := r.checkFree(ctx, name, force); err != nil {
		return Info{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Info{}, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	stage, err := r.stageDir(name)
	if err != nil {
		return Info{}, err
	}
	defer os.RemoveAll(stage)
	m, err := ReadArchive(ctx, f, filepath.Join(stage, UpperFile), func(m Manifest) error {
		if haveImage == nil {
			return nil
		}
		return haveImage(ctx, m.Image.Reference, m.Image.ManifestDigest)
	})
	if err != nil {
		return Info{}, err
	}
	return r.commit(ctx, name, stage, m, force)
}

// checkFree fails with ErrExists if name is taken, unless force.
func (r Repo) checkFree(ctx context.Context, name string, force bool) error {
	sn, err := r.Store.Snapshot(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case sn.Name == name && !force:
		return fmt.Errorf("snapshot %q: %w (use -f to replace it)", name, ErrExists)
	}
	return nil
}

// stageDir makes a fresh directory in the snapshots directory to build a
// snapshot in, renamed into place by commit. Its leading "." keeps it from
// ever being a valid snapshot name.
func (r Repo) stageDir(name string) (string, error) {
	if err := home.EnsureDir(r.Home.SnapshotsDir()); err != nil {
		return "", err
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	dir := filepath.Join(r.Home.SnapshotsDir(), ".tmp-"+name+"-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, home.DirMode); err != nil {
		return "", fmt.Errorf("snapshot %s: %w", name, err)
	}
	return dir, nil
}

// commit writes m into stage, moves stage to snapshots/<name> (replacing
// an existing snapshot when force) and indexes it.
func (r Repo) commit(ctx context.Context, name, stage string, m Manifest, force bool) (Info, error) {
	raw, err := m.Canonical()
	if err != nil {
		return Info{}, err
	}
	id, err := m.ID()
	if err != nil {
		return Info{}, err
	}
	if err := os.WriteFile(filepath.Join(stage, ManifestFile), raw, 0o600); err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	if other, err := r.Store.Snapshot(ctx, id); err == nil && other.Digest == id && !(force && other.Name == name) {
		return Info{}, fmt.Errorf("snapshot %s: %w: the same snapshot is indexed as %q", name, ErrExists, other.Name)
	}
	if force {
		if err := r.Remove(ctx, name); err != nil && !errors.Is(err, ErrNotFound) {
			return Info{}, fmt.Errorf("replace snapshot %s: %w", name, err)
		}
	}
	dir := r.Home.SnapshotDir(name)
	// A directory left by a crash between rename and insert (or a removed
	// snapshot's leftovers) is not indexed: it is safe to replace.
	if _, err := r.Store.Snapshot(ctx, name); errors.Is(err, ErrNotFound) {
		_ = os.RemoveAll(dir)
	}
	if err := os.Rename(stage, dir); err != nil {
		return Info{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	_, err = r.Store.InsertSnapshot(ctx, store.Snapshot{Digest: id, Name: name, ParentDigest: m.Parent,
		ImageRef: m.Image.Reference, ImageManifestDigest: m.Image.ManifestDigest, Format: m.Format,
		FSType: m.FSType, ArtifactPath: dir, SizeBytes: m.Upper.SizeBytes, SourceSandbox: m.SourceSandbox,
		CreatedAt: m.CreatedAt})
	if err != nil {
		_ = os.RemoveAll(dir)
		return Info{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	return r.info(name, id, dir, m), nil
}

func (r Repo) info(name, id, dir string, m Manifest) Info {
	in := Info{Name: name, ID: id, Manifest: m, Dir: dir}
	if fi, err := os.Stat(filepath.Join(dir, UpperFile)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			in.AllocatedBytes = int64(st.Blocks) * 512
		}
	}
	return in
}

// Inspect returns the snapshot named ref, or whose id is ref.
func (r Repo) Inspect(ctx context.Context, ref string) (Info, error) {
	sn, err := r.lookup(ctx, ref)
	if err != nil {
		return Info{}, err
	}
	m, _, err := readManifest(sn.ArtifactPath)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot %q: %w", ref, err)
	}
	return r.info(sn.Name, sn.Digest, sn.ArtifactPath, m), nil
}

// List returns every indexed snapshot, oldest first. A snapshot whose
// manifest is unreadable is listed from its index row alone.
func (r Repo) List(ctx context.Context) ([]Info, error) {
	rows, err := r.Store.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(rows))
	for _, sn := range rows {
		m, _, err := readManifest(sn.ArtifactPath)
		if err != nil {
			m = Manifest{Schema: SchemaVersion, Format: sn.Format, FSType: sn.FSType, Parent: sn.ParentDigest,
				Image:     Image{Reference: sn.ImageRef, ManifestDigest: sn.ImageManifestDigest},
				CreatedAt: sn.CreatedAt, Upper: Upper{File: UpperFile, SizeBytes: sn.SizeBytes},
				SourceSandbox: sn.SourceSandbox}
		}
		out = append(out, r.info(sn.Name, sn.Digest, sn.ArtifactPath, m))
	}
	return out, nil
}

// Verify re-hashes the snapshot's manifest and upper: the manifest must
// still hash to the indexed id and the upper to the manifest's digest.
func (r Repo) Verify(ctx context.Context, ref string) error {
	in, err := r.Inspect(ctx, ref)
	if err != nil {
		return err
	}
	if id, err := in.Manifest.ID(); err != nil || id != in.ID {
		return fmt.Errorf("verify %s: manifest hashes to %s, indexed as %s: %w", in.Name, id, in.ID, ErrDigestMismatch)
	}
	got, err := Digest(ctx, filepath.Join(in.Dir, UpperFile))
	if err != nil {
		return fmt.Errorf("verify %s: %w", in.Name, err)
	}
	if got != in.Manifest.Upper.Integrity.Digest {
		return fmt.Errorf("verify %s: %w (manifest %s, upper %s)", in.Name, ErrDigestMismatch, in.Manifest.Upper.Integrity.Digest, got)
	}
	return nil
}

// Remove deletes a snapshot from the index and its directory.
func (r Repo) Remove(ctx context.Context, ref string) error {
	sn, err := r.lookup(ctx, ref)
	if err != nil {
		return err
	}
	if err := r.Store.DeleteSnapshot(ctx, sn.Digest); err != nil {
		if errors.Is(err, store.ErrInUse) {
			return fmt.Errorf("snapshot %q is the parent of another snapshot: %w (remove that one first)", ref, ErrInUse)
		}
		return err
	}
	if err := os.RemoveAll(sn.ArtifactPath); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", ref, err)
	}
	return nil
}

// Export writes the snapshot ref as an archive to w (see WriteArchive).
func (r Repo) Export(ctx context.Context, ref string, w io.Writer, plain bool) error {
	sn, err := r.lookup(ctx, ref)
	if err != nil {
		return err
	}
	return WriteArchive(ctx, sn.ArtifactPath, w, plain)
}

// lookup returns the index row of the snapshot named ref, or whose id is
// ref.
func (r Repo) lookup(ctx context.Context, ref string) (store.Snapshot, error) {
	sn, err := r.Store.Snapshot(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return store.Snapshot{}, fmt.Errorf("snapshot %q: %w (see `msb snapshot ls`)", ref, ErrNotFound)
	}
	return sn, err
}
