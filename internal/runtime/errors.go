package runtime

import "errors"

var (
	// ErrNotReady is returned by Relay.Serve before WaitReady has succeeded.
	ErrNotReady = errors.New("runtime: relay not ready")
	// ErrRelayClosed is returned by Relay methods after Close.
	ErrRelayClosed = errors.New("runtime: relay closed")
	// ErrGuestClosed is returned (possibly wrapping the read or write error)
	// when the guest side of the relay ended or became unusable.
	ErrGuestClosed = errors.New("runtime: guest stream closed")
	// ErrHeartbeatTooLarge is returned by ReadHeartbeat for an oversized file.
	ErrHeartbeatTooLarge = errors.New("runtime: heartbeat file too large")
	// ErrBootErrorTooLarge is returned by ReadBootError for an oversized file.
	ErrBootErrorTooLarge = errors.New("runtime: boot error file too large")
)
