// Package relay multiplexes the clients of runtime/agent.sock onto the guest
// agent's console stream (reference §3.4): each client gets its own range of
// frame ids, frames are routed by id, and every queue is bounded.
//
// **better** than 0.4.4: a client that sends an id outside its range is
// disconnected; a client that leaves gets its sessions killed (fs writes
// aborted) and its ids stay reserved until the guest ends them; guest frames
// are decoded and dropped when they lie, and session state follows their
// decoded type; guest output is queued under per-client and total caps with
// back-pressure on the guest, and a client that does not drain is
// disconnected after a stall timeout. docs/relay.md has the rules, caps and
// the tests that try to break them.
package relay
