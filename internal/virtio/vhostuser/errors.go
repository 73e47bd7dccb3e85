package vhostuser

import "errors"

// ErrProtocol reports a message the front-end should not have sent: a
// malformed header or payload, an unsupported request, too many
// descriptors, or a value out of range (ring index, ring size, region,
// address). Serve returns it (wrapped) when it ends the connection because
// of one.
var ErrProtocol = errors.New("vhost-user protocol error")
