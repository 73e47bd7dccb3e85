package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Metric is one resource sample of a sandbox process (reference §5.2),
// written once a second by the sandbox process.
type Metric struct {
	SandboxID      int64
	CPUPercent     float64 // may exceed 100 with several vCPUs
	MemoryBytes    int64
	DiskReadBytes  int64
	DiskWriteBytes int64
	// Network counters since the sandbox process started: rx is guest to
	// host (what the guest sent), tx host to guest.
	NetRxBytes     int64
	NetTxBytes     int64
	NetRxPackets   int64
	NetTxPackets   int64
	NetFlowsDenied int64     // flows the policy refused
	SampledAt      time.Time // UTC, millisecond precision
}

const metricCols = "sandbox_id, cpu_percent, memory_bytes, disk_read_bytes, disk_write_bytes, net_rx_bytes, net_tx_bytes, " +
	"net_rx_packets, net_tx_packets, net_flows_denied, sampled_at"

func scanMetric(row rowScanner) (Metric, error) {
	var m Metric
	var sampled int64
	if err := row.Scan(&m.SandboxID, &m.CPUPercent, &m.MemoryBytes, &m.DiskReadBytes, &m.DiskWriteBytes,
		&m.NetRxBytes, &m.NetTxBytes, &m.NetRxPackets, &m.NetTxPackets, &m.NetFlowsDenied, &sampled); err != nil {
		return Metric{}, err
	}
	m.SampledAt = fromMS(sampled)
	return m, nil
}

// InsertMetric stores a sample and, in the same transaction, deletes the
// sandbox's oldest samples beyond the retention bound (SetMetricRetention),
// so a sandbox never holds more than that many rows. Unlike 0.4.4, which
// never prunes, the table cannot grow without bound for long-lived
// sandboxes. A zero SampledAt means now.
func (s *Store) InsertMetric(ctx context.Context, m Metric) error {
	sampled := m.SampledAt
	if sampled.IsZero() {
		sampled = now()
	}
	keep := s.retention.Load()
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO sandbox_metric ("+metricCols+", created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			m.SandboxID, m.CPUPercent, m.MemoryBytes, m.DiskReadBytes, m.DiskWriteBytes, m.NetRxBytes, m.NetTxBytes,
			m.NetRxPackets, m.NetTxPackets, m.NetFlowsDenied, ms(sampled), ms(now()))
		if isForeignKey(err) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		// The row at offset keep (newest first) is the newest one to drop;
		// it and everything older go. The (sandbox_id, sampled_at) index
		// orders ties by rowid, so this walks at most keep index entries.
		_, err = tx.ExecContext(ctx, `DELETE FROM sandbox_metric WHERE sandbox_id = ?1 AND (sampled_at, id) <= (
			SELECT sampled_at, id FROM sandbox_metric WHERE sandbox_id = ?1
			ORDER BY sampled_at DESC, id DESC LIMIT 1 OFFSET ?2)`, m.SandboxID, keep)
		return err
	})
	if err != nil {
		return fmt.Errorf("insert metric for sandbox %d: %w", m.SandboxID, err)
	}
	return nil
}

// LatestMetric returns the newest sample of a sandbox, or ErrNotFound.
func (s *Store) LatestMetric(ctx context.Context, sandboxID int64) (Metric, error) {
	var m Metric
	err := s.read(ctx, func() (err error) {
		m, err = scanMetric(s.db.QueryRowContext(ctx, "SELECT "+metricCols+
			" FROM sandbox_metric WHERE sandbox_id = ? ORDER BY sampled_at DESC, id DESC LIMIT 1", sandboxID))
		return err
	})
	if err != nil {
		return Metric{}, fmt.Errorf("latest metric of sandbox %d: %w", sandboxID, notFound(err))
	}
	return m, nil
}

// Metrics returns the samples of a sandbox taken at or after since, oldest
// first.
func (s *Store) Metrics(ctx context.Context, sandboxID int64, since time.Time) ([]Metric, error) {
	out, err := queryAll(ctx, s, scanMetric, "SELECT "+metricCols+
		" FROM sandbox_metric WHERE sandbox_id = ? AND sampled_at >= ? ORDER BY sampled_at, id",
		sandboxID, ms(since))
	if err != nil {
		return nil, fmt.Errorf("list metrics of sandbox %d: %w", sandboxID, err)
	}
	return out, nil
}
