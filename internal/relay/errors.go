package relay

import "errors"

var (
	// ErrNotReady is returned by Relay.Serve before WaitReady has succeeded.
	ErrNotReady = errors.New("relay: not ready")
	// ErrRelayClosed is returned by Relay methods after Close.
	ErrRelayClosed = errors.New("relay: closed")
	// ErrGuestClosed is returned (possibly wrapping the read or write error)
	// when the guest side of the relay ended or became unusable.
	ErrGuestClosed = errors.New("relay: guest stream closed")
)
