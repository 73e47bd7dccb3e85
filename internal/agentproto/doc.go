// Package agentproto defines the wire protocol spoken between the host (the
// relay and agentclient) and agentd, the guest agent.
//
// It is compatible with microsandbox 0.4.4 (protocol "v1", 14 message types).
// A frame is
//
//	[len u32 BE][id u32 BE][flags u8][CBOR body]
//
// where len = 5 + len(body) and 5 ≤ len ≤ MaxFrameLen. The body is the CBOR map
// {"v": 1, "t": <wire name>, "p": <byte string>}, and "p" holds the payload,
// CBOR-encoded separately. Payloads follow serde/ciborium conventions so that a
// Rust agentd and a Go one are interchangeable: structs are maps keyed by field
// name (in declaration order), absent optionals are null with the key present,
// nil slices are empty arrays, byte fields are byte strings and enums are
// externally tagged ({"Stat": {"path": "/x"}}).
//
// Every byte that arrives from the guest is hostile: the Decoder and
// ReadRawFrame bound every allocation by the frame size, and payload decoding
// runs with limits on nesting, array length and map size.
//
// Session ids: id 0 carries core.ready and core.shutdown. A relay client owns
// ids offset+1 … offset+IDStep-1 where offset = slot·IDStep; the relay routes
// guest→host frames to slot min(id/IDStep, MaxClients-1).
package agentproto
