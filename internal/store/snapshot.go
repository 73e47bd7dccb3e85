package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Snapshot is a row of the snapshot index (reference §10.3): a copy of a
// stopped sandbox's upper layer, identified by the SHA-256 of its canonical
// manifest.json.
type Snapshot struct {
	Digest              string
	Name                string // "" for an unnamed snapshot
	ParentDigest        string // "" for none
	ImageRef            string
	ImageManifestDigest string
	Format              string // "raw"
	FSType              string // "ext4"
	ArtifactPath        string // directory holding manifest.json and upper.ext4
	SizeBytes           int64
	SourceSandbox       string
	CreatedAt           time.Time
	IndexedAt           time.Time // set by InsertSnapshot
}

const snapshotCols = "digest, name, parent_digest, image_ref, image_manifest_digest, format, fstype, artifact_path, size_bytes, source_sandbox, created_at, indexed_at"

func scanSnapshot(row rowScanner) (Snapshot, error) {
	var sn Snapshot
	var name, parent sql.NullString
	var created, indexed int64
	if err := row.Scan(&sn.Digest, &name, &parent, &sn.ImageRef, &sn.ImageManifestDigest, &sn.Format, &sn.FSType,
		&sn.ArtifactPath, &sn.SizeBytes, &sn.SourceSandbox, &created, &indexed); err != nil {
		return Snapshot{}, err
	}
	sn.Name, sn.ParentDigest = name.String, parent.String
	sn.CreatedAt, sn.IndexedAt = fromMS(created), fromMS(indexed)
	return sn, nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// InsertSnapshot indexes a snapshot. It returns ErrExists if the digest or
// the name is taken. A zero CreatedAt means now; Format and FSType default
// to "raw" and "ext4".
func (s *Store) InsertSnapshot(ctx context.Context, sn Snapshot) (Snapshot, error) {
	if sn.Digest == "" {
		return Snapshot{}, fmt.Errorf("insert snapshot: empty digest")
	}
	t := now()
	if sn.CreatedAt.IsZero() {
		sn.CreatedAt = t
	}
	sn.CreatedAt = sn.CreatedAt.UTC().Truncate(time.Millisecond)
	sn.IndexedAt = t
	if sn.Format == "" {
		sn.Format = "raw"
	}
	if sn.FSType == "" {
		sn.FSType = "ext4"
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO snapshot ("+snapshotCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			sn.Digest, nullString(sn.Name), nullString(sn.ParentDigest), sn.ImageRef, sn.ImageManifestDigest,
			sn.Format, sn.FSType, sn.ArtifactPath, sn.SizeBytes, sn.SourceSandbox, ms(sn.CreatedAt), ms(sn.IndexedAt))
		return err
	})
	if isUnique(err) {
		err = ErrExists
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("insert snapshot %s: %w", sn.Digest, err)
	}
	return sn, nil
}

// Snapshot returns the snapshot whose name, or else digest, is ref; or
// ErrNotFound.
func (s *Store) Snapshot(ctx context.Context, ref string) (Snapshot, error) {
	var sn Snapshot
	err := s.read(ctx, func() (err error) {
		sn, err = scanSnapshot(s.db.QueryRowContext(ctx, "SELECT "+snapshotCols+
			" FROM snapshot WHERE name = ?1 OR digest = ?1 ORDER BY name = ?1 DESC LIMIT 1", ref))
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("get snapshot %s: %w", ref, notFound(err))
	}
	return sn, nil
}

// Snapshots returns every snapshot, oldest first.
func (s *Store) Snapshots(ctx context.Context) ([]Snapshot, error) {
	out, err := queryAll(ctx, s, scanSnapshot, "SELECT "+snapshotCols+" FROM snapshot ORDER BY created_at, digest")
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return out, nil
}

// DeleteSnapshot removes a snapshot from the index. It returns ErrInUse
// while another snapshot names it as parent.
func (s *Store) DeleteSnapshot(ctx context.Context, digest string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var children int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM snapshot WHERE parent_digest = ?", digest).Scan(&children); err != nil {
			return err
		}
		if children > 0 {
			return ErrInUse
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM snapshot WHERE digest = ?", digest)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete snapshot %s: %w", digest, err)
	}
	return nil
}
