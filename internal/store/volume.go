package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Volume is a row of the volume table: a named volume under
// volumes/<name>. The quota is recorded, not enforced (reference §2).
type Volume struct {
	ID        int64
	Name      string
	QuotaMiB  *int64 // nil: no quota
	SizeBytes *int64 // nil: not measured
	Labels    map[string]string
	CreatedAt time.Time
	UpdatedAt time.Time
}

const volumeCols = "id, name, quota_mib, size_bytes, labels, created_at, updated_at"

func scanVolume(row rowScanner) (Volume, error) {
	var v Volume
	var quota, size sql.NullInt64
	var labels string
	var created, updated int64
	if err := row.Scan(&v.ID, &v.Name, &quota, &size, &labels, &created, &updated); err != nil {
		return Volume{}, err
	}
	if quota.Valid {
		v.QuotaMiB = &quota.Int64
	}
	if size.Valid {
		v.SizeBytes = &size.Int64
	}
	var err error
	if v.Labels, err = decodeLabels(labels); err != nil {
		return Volume{}, err
	}
	v.CreatedAt, v.UpdatedAt = fromMS(created), fromMS(updated)
	return v, nil
}

func nullInt(p *int64) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: *p, Valid: true}
}

// CreateVolume inserts v (ID and timestamps are set from the row) or
// returns ErrExists.
func (s *Store) CreateVolume(ctx context.Context, v Volume) (Volume, error) {
	labels, err := encodeJSON(v.Labels)
	if err != nil {
		return Volume{}, fmt.Errorf("create volume %q: %w", v.Name, err)
	}
	t := now()
	v.CreatedAt, v.UpdatedAt = t, t
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"INSERT INTO volume (name, quota_mib, size_bytes, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
			v.Name, nullInt(v.QuotaMiB), nullInt(v.SizeBytes), labels, ms(t), ms(t))
		if err != nil {
			return err
		}
		v.ID, err = res.LastInsertId()
		return err
	})
	if isUnique(err) {
		err = ErrExists
	}
	if err != nil {
		return Volume{}, fmt.Errorf("create volume %q: %w", v.Name, err)
	}
	return v, nil
}

// Volume returns the volume called name, or ErrNotFound.
func (s *Store) Volume(ctx context.Context, name string) (Volume, error) {
	var v Volume
	err := s.read(ctx, func() (err error) {
		v, err = scanVolume(s.db.QueryRowContext(ctx, "SELECT "+volumeCols+" FROM volume WHERE name = ?", name))
		return err
	})
	if err != nil {
		return Volume{}, fmt.Errorf("get volume %q: %w", name, notFound(err))
	}
	return v, nil
}

// Volumes returns every volume ordered by name.
func (s *Store) Volumes(ctx context.Context) ([]Volume, error) {
	out, err := queryAll(ctx, s, scanVolume, "SELECT "+volumeCols+" FROM volume ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return out, nil
}

// SetVolumeSize records the measured size of a volume.
func (s *Store) SetVolumeSize(ctx context.Context, name string, sizeBytes int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE volume SET size_bytes = ?, updated_at = ? WHERE name = ?",
			sizeBytes, ms(now()), name)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("set volume %q size: %w", name, err)
	}
	return nil
}

// DeleteVolume deletes the volume row called name, or returns ErrNotFound.
func (s *Store) DeleteVolume(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM volume WHERE name = ?", name)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete volume %q: %w", name, err)
	}
	return nil
}
