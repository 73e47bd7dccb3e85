package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// heartbeatInterval is how often the heartbeat file is rewritten
// (reference §5).
const heartbeatInterval = time.Second

// heartbeat is the JSON the host's idle watcher reads.
type heartbeat struct {
	Timestamp      string `json:"timestamp"`
	ActiveSessions int    `json:"active_sessions"`
	LastActivity   string `json:"last_activity"`
}

func (s *server) heartbeatLoop(stop <-chan struct{}) {
	if s.opts.HeartbeatPath == "" {
		return
	}
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for beat := 0; ; beat++ {
		if err := s.writeHeartbeat(time.Now()); err != nil {
			s.log.Warn("heartbeat", "err", err)
		}
		if s.opts.ClockPath != "" && beat%clockSyncEvery == 0 {
			if skew, err := syncClock(s.opts.ClockPath, time.Now(), setRealtime); err != nil && !os.IsNotExist(err) {
				s.log.Debug("clock sync", "err", err)
			} else if skew > maxClockSkew || skew < -maxClockSkew {
				s.log.Info("clock corrected from the host", "skew", skew)
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// writeHeartbeat writes the heartbeat via a temporary file and rename, so
// the host never reads a partial file. Activity is any frame from the host
// or any running session (better than 0.4.4, where a long-running command
// without input looked idle).
func (s *server) writeHeartbeat(now time.Time) error {
	active := s.activeSessions()
	if active > 0 {
		s.lastActivity.Store(now.UnixNano())
	}
	hb := heartbeat{
		Timestamp:      now.UTC().Format(time.RFC3339),
		ActiveSessions: active,
		LastActivity:   time.Unix(0, s.lastActivity.Load()).UTC().Format(time.RFC3339),
	}
	data, err := json.MarshalIndent(hb, "", "  ")
	if err != nil {
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	p := s.opts.HeartbeatPath
	tmp := strings.TrimSuffix(p, filepath.Ext(p)) + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return nil
}

// setRealtime sets the guest's wall clock.
func setRealtime(ns int64) error {
	ts := unix.NsecToTimespec(ns)
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}
