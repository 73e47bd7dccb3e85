package agentproto

import "fmt"

// Negotiate returns the protocol version both this host and the agent that
// sent r speak.
//
// ProtocolVersion 0 is a 0.4.4 agent, which does not send the field; it is
// treated as version 1. Additive features are advertised through
// Ready.Capabilities, so the version only changes incompatibly: an agent
// newer than this host cannot be driven, and the error tells the user to
// upgrade msb.
func Negotiate(r Ready) (uint32, error) {
	v := r.ProtocolVersion
	if v == 0 {
		v = 1
	}
	if v > ProtocolVersion {
		return 0, fmt.Errorf("%w: the agent speaks protocol version %d but this msb knows only up to %d; upgrade msb",
			ErrUnsupportedVersion, v, ProtocolVersion)
	}
	return v, nil
}
