package launch

import "errors"

var (
	// ErrHeartbeatTooLarge is returned by ReadHeartbeat for an oversized file.
	ErrHeartbeatTooLarge = errors.New("launch: heartbeat file too large")
	// ErrBootErrorTooLarge is returned by ReadBootError for an oversized file.
	ErrBootErrorTooLarge = errors.New("launch: boot error file too large")
)
