// Package relay multiplexes the clients of runtime/agent.sock onto the guest
// agent's console stream (reference §3.4): each client gets its own range of
// frame ids, frames are routed by id without decoding their payloads except
// where the relay must (exec.log, session tracking), and every queue is
// bounded.
//
// **better** than 0.4.4: a client that sends an id outside its range is
// disconnected; a client that leaves gets its sessions killed; a guest that
// stops reading slows clients down instead of losing their frames.
package relay
