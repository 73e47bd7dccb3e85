package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// RootfsMode is how a sandbox's root file system is provided.
type RootfsMode string

// Root file system modes (reference §7 sandbox_rootfs).
const (
	RootfsEROFS     RootfsMode = "erofs"      // OCI image: EROFS lower + ext4 upper
	RootfsBind      RootfsMode = "bind"       // host directory over virtio-fs
	RootfsDiskImage RootfsMode = "disk_image" // raw disk image over virtio-blk
)

// Rootfs is a row of sandbox_rootfs.
type Rootfs struct {
	SandboxID      int64
	ManifestDigest string // "" unless Mode is RootfsEROFS
	Mode           RootfsMode
	UpperFSType    string // "ext4" for RootfsEROFS
	CreatedAt      time.Time
}

// SetSandboxRootfs records (or replaces) how a sandbox's root is built. A
// non-empty ManifestDigest must name a stored manifest (ErrNotFound
// otherwise); while recorded, that manifest cannot be deleted.
func (s *Store) SetSandboxRootfs(ctx context.Context, r Rootfs) error {
	switch r.Mode {
	case RootfsEROFS, RootfsBind, RootfsDiskImage:
	default:
		return fmt.Errorf("set sandbox %d rootfs: invalid mode %q", r.SandboxID, r.Mode)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var manifestID sql.NullInt64
		if r.ManifestDigest != "" {
			err := tx.QueryRowContext(ctx, "SELECT id FROM manifest WHERE digest = ?", r.ManifestDigest).Scan(&manifestID)
			if err != nil {
				return notFound(err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sandbox_rootfs (sandbox_id, manifest_id, mode, upper_fstype, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (sandbox_id) DO UPDATE SET manifest_id = excluded.manifest_id,
			mode = excluded.mode, upper_fstype = excluded.upper_fstype`,
			r.SandboxID, manifestID, r.Mode, r.UpperFSType, ms(now()))
		if isForeignKey(err) {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("set sandbox %d rootfs: %w", r.SandboxID, err)
	}
	return nil
}

// SandboxRootfs returns a sandbox's rootfs row, or ErrNotFound.
func (s *Store) SandboxRootfs(ctx context.Context, sandboxID int64) (Rootfs, error) {
	var r Rootfs
	err := s.read(ctx, func() error {
		var digest sql.NullString
		var created int64
		err := s.db.QueryRowContext(ctx, `SELECT r.sandbox_id, m.digest, r.mode, r.upper_fstype, r.created_at
			FROM sandbox_rootfs r LEFT JOIN manifest m ON m.id = r.manifest_id WHERE r.sandbox_id = ?`, sandboxID).
			Scan(&r.SandboxID, &digest, &r.Mode, &r.UpperFSType, &created)
		r.ManifestDigest, r.CreatedAt = digest.String, fromMS(created)
		return err
	})
	if err != nil {
		return Rootfs{}, fmt.Errorf("get sandbox %d rootfs: %w", sandboxID, notFound(err))
	}
	return r, nil
}
