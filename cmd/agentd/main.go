// Binary agentd is the guest agent of msb, PID 1 inside every sandbox VM.
// Build it static: CGO_ENABLED=0 go build ./cmd/agentd.
package main

import "github.com/msb-go/msb/internal/agent"

func main() { agent.Main() }
