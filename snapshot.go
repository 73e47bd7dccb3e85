package msb

import (
	"context"
	"io"
	"maps"
	"time"

	"github.com/msb-go/msb/internal/sandbox"
	"github.com/msb-go/msb/internal/snapshot"
)

// Errors of snapshot operations, for errors.Is.
var (
	// ErrNoUpper: the sandbox has no upper layer to snapshot (a live root).
	ErrNoUpper = sandbox.ErrNoUpper
	// ErrImageNotCached: a snapshot's image is not in the local image cache
	// (pull it first).
	ErrImageNotCached = sandbox.ErrImageNotCached
	// ErrSnapshotImage: the snapshot's image cannot be replaced by another
	// image or a root directory, and a directory root cannot be snapshotted.
	ErrSnapshotImage = sandbox.ErrSnapshotImage
	// ErrSnapshotCorrupt: a snapshot's upper or manifest does not match its
	// recorded digest (VerifySnapshot, ExportSnapshot, ImportSnapshot).
	ErrSnapshotCorrupt = snapshot.ErrDigestMismatch
	// ErrBadSnapshotArchive: an import file that is not an msb snapshot
	// export.
	ErrBadSnapshotArchive = snapshot.ErrBadArchive
	// ErrSnapshotInUse: the snapshot is the parent of another one.
	ErrSnapshotInUse = snapshot.ErrInUse
)

// snapshotConfig is what the snapshot Options set.
type snapshotConfig struct {
	from   string
	labels map[string]string
	force  bool
	plain  bool
}

// FromSnapshot makes Create boot the new sandbox with a copy of the
// snapshot's upper layer (by name or id), on the image the snapshot was
// taken on: the image comes from the snapshot's manifest, pinned to its
// digest, and must be in the local cache. WithImage may repeat that image
// but not name another; WithRootfs is refused.
func FromSnapshot(name string) Option { return func(c *config) { c.snap.from = name } }

// WithSnapshotLabel adds a KEY=VALUE label to a snapshot being created.
func WithSnapshotLabel(key, value string) Option {
	return func(c *config) {
		if c.snap.labels == nil {
			c.snap.labels = map[string]string{}
		}
		c.snap.labels[key] = value
	}
}

// ReplaceSnapshot lets CreateSnapshot and ImportSnapshot replace an
// existing snapshot of the same name.
func ReplaceSnapshot() Option { return func(c *config) { c.snap.force = true } }

// PlainTar makes ExportSnapshot write an uncompressed tar (default:
// zstd-compressed).
func PlainTar() Option { return func(c *config) { c.snap.plain = true } }

// SnapshotInfo describes a disk snapshot: a copy of a stopped sandbox's
// writable layer and the image it sits on.
type SnapshotInfo struct {
	Name string
	// ID is "sha256:" and the SHA-256 of the snapshot's canonical manifest.
	ID string
	// ImageReference and ImageDigest name the image the snapshot boots on.
	ImageReference string
	ImageDigest    string
	// Parent is the id of the snapshot the source sandbox was created
	// from, if any.
	Parent        string `json:",omitempty"`
	SourceSandbox string
	CreatedAt     time.Time
	Labels        map[string]string `json:",omitempty"`
	// SizeBytes is the upper layer's logical size; AllocatedBytes the disk
	// it uses (it is sparse).
	SizeBytes      int64
	AllocatedBytes int64
	// UpperDigest is the upper's msb-sparse-sha256-v1 integrity digest.
	UpperDigest string
	// Path is the snapshot's directory (manifest.json, upper.ext4).
	Path string
}

func toSnapshotInfo(in snapshot.Info) SnapshotInfo {
	m := in.Manifest
	return SnapshotInfo{Name: in.Name, ID: in.ID, ImageReference: m.Image.Reference, ImageDigest: m.Image.ManifestDigest,
		Parent: m.Parent, SourceSandbox: m.SourceSandbox, CreatedAt: m.CreatedAt, Labels: maps.Clone(m.Labels),
		SizeBytes: m.Upper.SizeBytes, AllocatedBytes: in.AllocatedBytes, UpperDigest: m.Upper.Integrity.Digest,
		Path: in.Dir}
}

// Snapshot copies this sandbox's writable layer into the snapshot name.
// The sandbox must be stopped (Stop it first): a running guest's disk is
// not consistent. Options: WithSnapshotLabel, ReplaceSnapshot.
func (s *Sandbox) Snapshot(ctx context.Context, name string, opts ...Option) (SnapshotInfo, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	in, err := s.mgr.Snapshot(ctx, s.name, name, snapshot.CreateOptions{Labels: c.snap.labels, Force: c.snap.force})
	if err != nil {
		return SnapshotInfo{}, err
	}
	return toSnapshotInfo(in), nil
}

// CreateSnapshot snapshots the stopped sandbox named sandboxName as name;
// see (*Sandbox).Snapshot.
func CreateSnapshot(ctx context.Context, sandboxName, name string, opts ...Option) (SnapshotInfo, error) {
	c, m, err := open(ctx, opts)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer m.Close()
	in, err := m.Snapshot(ctx, sandboxName, name, snapshot.CreateOptions{Labels: c.snap.labels, Force: c.snap.force})
	if err != nil {
		return SnapshotInfo{}, err
	}
	return toSnapshotInfo(in), nil
}

// Snapshots lists every snapshot, oldest first.
func Snapshots(ctx context.Context, opts ...Option) ([]SnapshotInfo, error) {
	_, m, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	list, err := m.Snapshots().List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SnapshotInfo, 0, len(list))
	for _, in := range list {
		out = append(out, toSnapshotInfo(in))
	}
	return out, nil
}

// InspectSnapshot returns the snapshot with this name or id.
func InspectSnapshot(ctx context.Context, ref string, opts ...Option) (SnapshotInfo, error) {
	_, m, err := open(ctx, opts)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer m.Close()
	in, err := m.Snapshots().Inspect(ctx, ref)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return toSnapshotInfo(in), nil
}

// VerifySnapshot re-hashes the snapshot: its manifest must hash to its id
// and its upper to the manifest's integrity digest, else the error matches
// ErrSnapshotCorrupt.
func VerifySnapshot(ctx context.Context, ref string, opts ...Option) error {
	_, m, err := open(ctx, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Snapshots().Verify(ctx, ref)
}

// RemoveSnapshot deletes the snapshot with this name or id. Sandboxes
// created from it keep their own copy.
func RemoveSnapshot(ctx context.Context, ref string, opts ...Option) error {
	_, m, err := open(ctx, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Snapshots().Remove(ctx, ref)
}

// ExportSnapshot writes the snapshot to w as a tar archive, zstd-compressed
// unless PlainTar is given, carrying only the upper's non-zero blocks (see
// docs/snapshots.md for the layout). It re-hashes the upper on the way and
// fails with ErrSnapshotCorrupt rather than export a damaged snapshot.
func ExportSnapshot(ctx context.Context, ref string, w io.Writer, opts ...Option) error {
	c, m, err := open(ctx, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Snapshots().Export(ctx, ref, w, c.snap.plain)
}

// ImportSnapshot imports an export archive (.tar.zst or plain .tar) from
// the file at path as name. The archive is untrusted: it is refused unless
// it has exactly the export's entries, its manifest validates, its image is
// in the local cache (ErrImageNotCached otherwise) and its data matches the
// manifest's digest; nothing is indexed before all of that holds.
func ImportSnapshot(ctx context.Context, path, name string, opts ...Option) (SnapshotInfo, error) {
	c, m, err := open(ctx, opts)
	if err != nil {
		return SnapshotInfo{}, err
	}
	defer m.Close()
	in, err := m.ImportSnapshot(ctx, path, name, c.snap.force)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return toSnapshotInfo(in), nil
}
