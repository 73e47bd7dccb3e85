// Package agentclient is the host side of the agent protocol: it connects
// to a sandbox's relay socket (Dial) or straight to agentd (NewDirect), and
// runs exec sessions and file system operations over agentproto frames.
//
// One Client owns one connection. A single reader goroutine decodes frames
// and dispatches them by session id to the session that owns the id; frames
// for ids nobody owns are dropped. Writes are serialized, one whole frame at
// a time. Session ids come from the range the relay assigned
// (offset+1 … offset+IDStep-1), wrap around, and skip ids still in use.
//
// Output is buffered per stream up to a small bound; when a caller stops
// reading, the reader goroutine blocks, which stalls every session on the
// connection until the caller reads again. Nothing is dropped and memory
// stays bounded. Like os/exec pipes, read a session's Stdout and Stderr
// concurrently, and finish reading before relying on Wait.
//
// When the connection ends, every pending and future call returns an error
// wrapping ErrClosed.
package agentclient
