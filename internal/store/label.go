package store

import (
	"context"
	"database/sql"
	"fmt"
)

// SetSandboxLabels replaces the labels of sandbox id with labels.
func (s *Store) SetSandboxLabels(ctx context.Context, id int64, labels map[string]string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM sandbox_label WHERE sandbox_id = ?", id); err != nil {
			return err
		}
		for k, v := range labels {
			if _, err := tx.ExecContext(ctx, "INSERT INTO sandbox_label (sandbox_id, key, value) VALUES (?, ?, ?)", id, k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set sandbox %d labels: %w", id, err)
	}
	return nil
}

type labelRow struct {
	id         int64
	key, value string
}

func scanLabel(row rowScanner) (labelRow, error) {
	var l labelRow
	err := row.Scan(&l.id, &l.key, &l.value)
	return l, err
}

// SandboxLabels returns the labels of every sandbox that has any, by
// sandbox id.
func (s *Store) SandboxLabels(ctx context.Context) (map[int64]map[string]string, error) {
	rows, err := queryAll(ctx, s, scanLabel, "SELECT sandbox_id, key, value FROM sandbox_label ORDER BY sandbox_id, key")
	if err != nil {
		return nil, fmt.Errorf("list sandbox labels: %w", err)
	}
	out := map[int64]map[string]string{}
	for _, r := range rows {
		if out[r.id] == nil {
			out[r.id] = map[string]string{}
		}
		out[r.id][r.key] = r.value
	}
	return out, nil
}

// SandboxLabelsOf returns the labels of sandbox id (empty if none).
func (s *Store) SandboxLabelsOf(ctx context.Context, id int64) (map[string]string, error) {
	rows, err := queryAll(ctx, s, scanLabel, "SELECT sandbox_id, key, value FROM sandbox_label WHERE sandbox_id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("get sandbox %d labels: %w", id, err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.key] = r.value
	}
	return out, nil
}
