package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Heartbeat is runtime/heartbeat.json, which agentd rewrites every second
// through virtio-fs (reference §5). Its content is guest-controlled.
type Heartbeat struct {
	Timestamp      time.Time `json:"timestamp"`
	ActiveSessions int       `json:"active_sessions"`
	LastActivity   time.Time `json:"last_activity"`
}

// maxHeartbeatSize bounds what ReadHeartbeat loads from the guest-written file;
// a real heartbeat is about 120 bytes.
const maxHeartbeatSize = 64 << 10

// ReadHeartbeat reads and parses the heartbeat file at path.
func ReadHeartbeat(path string) (Heartbeat, error) {
	f, err := os.Open(path)
	if err != nil {
		return Heartbeat{}, fmt.Errorf("read heartbeat: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxHeartbeatSize+1))
	if err != nil {
		return Heartbeat{}, fmt.Errorf("read heartbeat: %w", err)
	}
	if len(data) > maxHeartbeatSize {
		return Heartbeat{}, fmt.Errorf("read heartbeat: %w", ErrHeartbeatTooLarge)
	}
	return ParseHeartbeat(data)
}

// ParseHeartbeat parses heartbeat JSON. Both times must be RFC 3339 and
// active_sessions must not be negative.
func ParseHeartbeat(data []byte) (Heartbeat, error) {
	var hb Heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		return Heartbeat{}, fmt.Errorf("parse heartbeat: %w", err)
	}
	if hb.LastActivity.IsZero() {
		return Heartbeat{}, errors.New("parse heartbeat: missing last_activity")
	}
	if hb.ActiveSessions < 0 {
		return Heartbeat{}, fmt.Errorf("parse heartbeat: negative active_sessions %d", hb.ActiveSessions)
	}
	return hb, nil
}

// Idle reports whether the sandbox has been idle for at least timeout at now.
// A nil heartbeat (missing or unparseable file) is never idle, nor is a
// non-positive timeout (disabled). Unlike the reference, which ignores it, a
// heartbeat with active sessions is never idle: a long-running command that
// reads no input is still work.
func Idle(now time.Time, hb *Heartbeat, timeout time.Duration) bool {
	if hb == nil || timeout <= 0 || hb.ActiveSessions > 0 || hb.LastActivity.IsZero() {
		return false
	}
	return now.Sub(hb.LastActivity) >= timeout
}
