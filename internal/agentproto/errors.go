package agentproto

import "errors"

var (
	// ErrFrameTooLarge reports a length prefix above MaxFrameLen.
	ErrFrameTooLarge = errors.New("agentproto: frame too large")
	// ErrFrameTooShort reports a length prefix below MinFrameLen.
	ErrFrameTooShort = errors.New("agentproto: frame too short")
	// ErrUnknownType reports a "t" wire name this package does not know.
	ErrUnknownType = errors.New("agentproto: unknown message type")
	// ErrUnsupportedVersion reports an agent that speaks a newer protocol
	// version than this host.
	ErrUnsupportedVersion = errors.New("agentproto: unsupported protocol version")
)
