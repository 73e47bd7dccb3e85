package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	for {
		if err := s.writeHeartbeat(time.Now()); err != nil {
			s.log.Warn("heartbeat", "err", err)
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
