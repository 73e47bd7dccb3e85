package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Manifest is a row of the manifest table: one platform manifest whose
// layers have been pulled.
type Manifest struct {
	ID             int64
	Digest         string
	MediaType      string
	ConfigDigest   string
	Architecture   string
	OS             string
	Variant        string
	LayerCount     int
	TotalSizeBytes int64
	CreatedAt      time.Time
}

// ImageConfig is the runtime part of an OCI image configuration (config
// table).
type ImageConfig struct {
	Digest     string
	Env        []string // KEY=VALUE
	Cmd        []string
	Entrypoint []string
	WorkingDir string
	User       string
	Labels     map[string]string
	StopSignal string
}

// Layer is a row of the layer table, keyed by the uncompressed diff_id.
type Layer struct {
	ID                  int64
	DiffID              string
	BlobDigest          string
	MediaType           string
	CompressedSizeBytes int64
	EROFSSizeBytes      *int64 // nil until the layer has been converted
	CreatedAt           time.Time
	LastUsedAt          time.Time
}

// Image is a manifest with its config and its layers, bottom first.
type Image struct {
	Manifest Manifest
	Config   ImageConfig
	Layers   []Layer
}

// ImageRef maps a reference (registry/repo:tag or @digest) to a manifest.
type ImageRef struct {
	Reference      string
	ManifestDigest string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// PutImage records a pulled image in one transaction: the manifest (kept if
// its digest is already known), its config, its layers (shared by diff_id,
// last_used_at refreshed) in order, and, when ref is not empty, points ref
// at the manifest. Manifest.LayerCount is taken from len(img.Layers). It
// returns the image as stored.
func (s *Store) PutImage(ctx context.Context, ref string, img Image) (Image, error) {
	env, err1 := encodeJSON(img.Config.Env)
	cmd, err2 := encodeJSON(img.Config.Cmd)
	entry, err3 := encodeJSON(img.Config.Entrypoint)
	labels, err4 := encodeJSON(img.Config.Labels)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return Image{}, fmt.Errorf("put image %s: %w", img.Manifest.Digest, err)
		}
	}
	m := img.Manifest
	var out Image
	err := s.write(ctx, func(tx *sql.Tx) error {
		t := ms(now())
		_, err := tx.ExecContext(ctx, `INSERT INTO manifest (digest, media_type, config_digest, architecture, os,
			variant, layer_count, total_size_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (digest) DO NOTHING`,
			m.Digest, m.MediaType, m.ConfigDigest, m.Architecture, m.OS, m.Variant, len(img.Layers),
			m.TotalSizeBytes, t)
		if err != nil {
			return err
		}
		var manifestID int64
		if err := tx.QueryRowContext(ctx, "SELECT id FROM manifest WHERE digest = ?", m.Digest).Scan(&manifestID); err != nil {
			return err
		}
		c := img.Config
		if _, err := tx.ExecContext(ctx, `INSERT INTO config (manifest_id, digest, env, cmd, entrypoint,
			working_dir, user, labels, stop_signal, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (manifest_id) DO UPDATE SET digest = excluded.digest, env = excluded.env,
			cmd = excluded.cmd, entrypoint = excluded.entrypoint, working_dir = excluded.working_dir,
			user = excluded.user, labels = excluded.labels, stop_signal = excluded.stop_signal`,
			manifestID, c.Digest, env, cmd, entry, c.WorkingDir, c.User, labels, c.StopSignal, t); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM manifest_layer WHERE manifest_id = ?", manifestID); err != nil {
			return err
		}
		for pos, l := range img.Layers {
			if _, err := tx.ExecContext(ctx, `INSERT INTO layer (diff_id, blob_digest, media_type,
				compressed_size_bytes, erofs_size_bytes, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (diff_id) DO UPDATE SET last_used_at = excluded.last_used_at,
				erofs_size_bytes = coalesce(excluded.erofs_size_bytes, erofs_size_bytes)`,
				l.DiffID, l.BlobDigest, l.MediaType, l.CompressedSizeBytes, nullInt(l.EROFSSizeBytes), t, t); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO manifest_layer (manifest_id, layer_id, position)
				VALUES (?, (SELECT id FROM layer WHERE diff_id = ?), ?)`, manifestID, l.DiffID, pos); err != nil {
				return err
			}
		}
		if ref != "" {
			if _, err := tx.ExecContext(ctx, `INSERT INTO image_ref (reference, manifest_id, created_at, updated_at)
				VALUES (?, ?, ?, ?) ON CONFLICT (reference) DO UPDATE SET manifest_id = excluded.manifest_id,
				updated_at = excluded.updated_at`, ref, manifestID, t, t); err != nil {
				return err
			}
		}
		out, err = imageByManifest(ctx, tx, "m.id = ?", manifestID)
		return err
	})
	if err != nil {
		return Image{}, fmt.Errorf("put image %s: %w", m.Digest, err)
	}
	return out, nil
}

// querier is satisfied by *sql.DB and *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const manifestCols = "m.id, m.digest, m.media_type, m.config_digest, m.architecture, m.os, m.variant, m.layer_count, m.total_size_bytes, m.created_at"

func scanManifest(row rowScanner, extra ...any) (Manifest, error) {
	var m Manifest
	var created int64
	dest := append([]any{&m.ID, &m.Digest, &m.MediaType, &m.ConfigDigest, &m.Architecture, &m.OS, &m.Variant,
		&m.LayerCount, &m.TotalSizeBytes, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Manifest{}, err
	}
	m.CreatedAt = fromMS(created)
	return m, nil
}

// imageByManifest loads the image whose manifest matches where (a
// condition on alias m with one argument).
func imageByManifest(ctx context.Context, q querier, where string, arg any) (Image, error) {
	var img Image
	var env, cmd, entry, labels string
	c := &img.Config
	m, err := scanManifest(q.QueryRowContext(ctx, "SELECT "+manifestCols+`,
		c.digest, c.env, c.cmd, c.entrypoint, c.working_dir, c.user, c.labels, c.stop_signal
		FROM manifest m JOIN config c ON c.manifest_id = m.id WHERE `+where, arg),
		&c.Digest, &env, &cmd, &entry, &c.WorkingDir, &c.User, &labels, &c.StopSignal)
	if err != nil {
		return Image{}, notFound(err)
	}
	img.Manifest = m
	if c.Env, err = decodeStrings(env); err != nil {
		return Image{}, err
	}
	if c.Cmd, err = decodeStrings(cmd); err != nil {
		return Image{}, err
	}
	if c.Entrypoint, err = decodeStrings(entry); err != nil {
		return Image{}, err
	}
	if c.Labels, err = decodeLabels(labels); err != nil {
		return Image{}, err
	}
	rows, err := q.QueryContext(ctx, "SELECT "+layerCols+` FROM layer l
		JOIN manifest_layer ml ON ml.layer_id = l.id WHERE ml.manifest_id = ? ORDER BY ml.position`, m.ID)
	if err != nil {
		return Image{}, err
	}
	defer rows.Close()
	for rows.Next() {
		l, err := scanLayer(rows)
		if err != nil {
			return Image{}, err
		}
		img.Layers = append(img.Layers, l)
	}
	return img, rows.Err()
}

const layerCols = "l.id, l.diff_id, l.blob_digest, l.media_type, l.compressed_size_bytes, l.erofs_size_bytes, l.created_at, l.last_used_at"

func scanLayer(row rowScanner) (Layer, error) {
	var l Layer
	var erofs sql.NullInt64
	var created, used int64
	if err := row.Scan(&l.ID, &l.DiffID, &l.BlobDigest, &l.MediaType, &l.CompressedSizeBytes, &erofs, &created, &used); err != nil {
		return Layer{}, err
	}
	if erofs.Valid {
		l.EROFSSizeBytes = &erofs.Int64
	}
	l.CreatedAt, l.LastUsedAt = fromMS(created), fromMS(used)
	return l, nil
}

// ImageByRef returns the image ref points at, or ErrNotFound.
func (s *Store) ImageByRef(ctx context.Context, ref string) (Image, error) {
	var img Image
	err := s.read(ctx, func() (err error) {
		img, err = imageByManifest(ctx, s.db, "m.id = (SELECT manifest_id FROM image_ref WHERE reference = ?)", ref)
		return err
	})
	if err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", ref, err)
	}
	return img, nil
}

// ImageByDigest returns the image with manifest digest, or ErrNotFound.
func (s *Store) ImageByDigest(ctx context.Context, digest string) (Image, error) {
	var img Image
	err := s.read(ctx, func() (err error) {
		img, err = imageByManifest(ctx, s.db, "m.digest = ?", digest)
		return err
	})
	if err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", digest, err)
	}
	return img, nil
}

// ImageRefs returns every image reference ordered by reference.
func (s *Store) ImageRefs(ctx context.Context) ([]ImageRef, error) {
	out, err := queryAll(ctx, s, func(row rowScanner) (ImageRef, error) {
		var r ImageRef
		var created, updated int64
		err := row.Scan(&r.Reference, &r.ManifestDigest, &created, &updated)
		r.CreatedAt, r.UpdatedAt = fromMS(created), fromMS(updated)
		return r, err
	}, `SELECT r.reference, m.digest, r.created_at, r.updated_at
		FROM image_ref r JOIN manifest m ON m.id = r.manifest_id ORDER BY r.reference`)
	if err != nil {
		return nil, fmt.Errorf("list image refs: %w", err)
	}
	return out, nil
}

// DeleteImageRef removes a reference; the manifest stays (see
// DeleteManifest and UnreferencedManifests).
func (s *Store) DeleteImageRef(ctx context.Context, ref string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM image_ref WHERE reference = ?", ref)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete image ref %s: %w", ref, err)
	}
	return nil
}

// ManifestUsers returns the names of the sandboxes whose rootfs uses the
// manifest with digest, and as "snapshot:NAME" the snapshots that boot on
// it, ordered by name.
func (s *Store) ManifestUsers(ctx context.Context, digest string) ([]string, error) {
	out, err := queryAll(ctx, s, scanString, `SELECT name FROM (SELECT s.name AS name FROM sandbox s
		JOIN sandbox_rootfs r ON r.sandbox_id = s.id JOIN manifest m ON m.id = r.manifest_id
		WHERE m.digest = ?1
		UNION ALL SELECT 'snapshot:' || name FROM snapshot WHERE image_manifest_digest = ?1 AND name IS NOT NULL)
		ORDER BY name`, digest)
	if err != nil {
		return nil, fmt.Errorf("list users of manifest %s: %w", digest, err)
	}
	return out, nil
}

// ImageRefsInUse maps each image reference whose manifest is used by at
// least one sandbox's rootfs to those sandboxes' names (sorted). "msb image
// rm" refuses these without --force.
func (s *Store) ImageRefsInUse(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	err := s.read(ctx, func() error {
		clear(out)
		rows, err := s.db.QueryContext(ctx, `SELECT i.reference, s.name FROM image_ref i
			JOIN sandbox_rootfs r ON r.manifest_id = i.manifest_id JOIN sandbox s ON s.id = r.sandbox_id
			ORDER BY i.reference, s.name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ref, name string
			if err := rows.Scan(&ref, &name); err != nil {
				return err
			}
			out[ref] = append(out[ref], name)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list image refs in use: %w", err)
	}
	return out, nil
}

// UnreferencedManifests returns manifests that no image reference, no
// sandbox rootfs and no snapshot points at: candidates for garbage
// collection.
func (s *Store) UnreferencedManifests(ctx context.Context) ([]Manifest, error) {
	out, err := queryAll(ctx, s, func(r rowScanner) (Manifest, error) { return scanManifest(r) }, "SELECT "+manifestCols+` FROM manifest m
		WHERE NOT EXISTS (SELECT 1 FROM image_ref WHERE manifest_id = m.id)
		AND NOT EXISTS (SELECT 1 FROM sandbox_rootfs WHERE manifest_id = m.id)
		AND NOT EXISTS (SELECT 1 FROM snapshot WHERE image_manifest_digest = m.digest) ORDER BY m.digest`)
	if err != nil {
		return nil, fmt.Errorf("list unreferenced manifests: %w", err)
	}
	return out, nil
}

// DeleteManifest deletes a manifest with its config, layer list and the
// references to it. It returns ErrInUse while a sandbox rootfs uses it.
// Layers stay; see UnusedLayers.
func (s *Store) DeleteManifest(ctx context.Context, digest string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM manifest WHERE digest = ?", digest)
		if isForeignKey(err) {
			return ErrInUse
		}
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete manifest %s: %w", digest, err)
	}
	return nil
}

// UnusedLayers returns layers that no manifest lists, oldest use first.
func (s *Store) UnusedLayers(ctx context.Context) ([]Layer, error) {
	out, err := queryAll(ctx, s, scanLayer, "SELECT "+layerCols+` FROM layer l
		WHERE NOT EXISTS (SELECT 1 FROM manifest_layer WHERE layer_id = l.id) ORDER BY l.last_used_at, l.id`)
	if err != nil {
		return nil, fmt.Errorf("list unused layers: %w", err)
	}
	return out, nil
}

// Layer returns the layer with diffID, or ErrNotFound.
func (s *Store) Layer(ctx context.Context, diffID string) (Layer, error) {
	var l Layer
	err := s.read(ctx, func() (err error) {
		l, err = scanLayer(s.db.QueryRowContext(ctx, "SELECT "+layerCols+" FROM layer l WHERE l.diff_id = ?", diffID))
		return err
	})
	if err != nil {
		return Layer{}, fmt.Errorf("get layer %s: %w", diffID, notFound(err))
	}
	return l, nil
}

// SetLayerEROFSSize records the size of a layer's converted EROFS image.
func (s *Store) SetLayerEROFSSize(ctx context.Context, diffID string, size int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE layer SET erofs_size_bytes = ? WHERE diff_id = ?", size, diffID)
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("set layer %s erofs size: %w", diffID, err)
	}
	return nil
}

// DeleteLayer deletes a layer row; ErrInUse while a manifest lists it.
func (s *Store) DeleteLayer(ctx context.Context, diffID string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM layer WHERE diff_id = ?", diffID)
		if isForeignKey(err) {
			return ErrInUse
		}
		if err != nil {
			return err
		}
		return rowsAffected(res)
	})
	if err != nil {
		return fmt.Errorf("delete layer %s: %w", diffID, err)
	}
	return nil
}
