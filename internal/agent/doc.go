// Package agent is agentd, the guest agent of msb: PID 1 inside every sandbox
// VM.
//
// As PID 1 (Main) it reads its configuration from MSB_* variables (the kernel
// command line and /msb/boot.env, see Config), mounts the pseudo filesystems,
// assembles the root filesystem, sets up mounts, hostname and network, opens
// the virtio-console port named "agent" and serves the agent protocol
// (package agentproto) on it until the host shuts the VM down.
//
// Serve is the protocol loop on its own and runs as an ordinary process, which
// is how the tests drive it (over a socketpair). Its concurrency model:
//
//	console reader ──► dispatch ──► per-session stdin queue ──► stdin writer ──► child
//	                        │                                               │
//	                        └──► fs ops (own goroutines)        child output readers
//	                                   │                                    │
//	                                   └──────────► out (bounded) ◄─────────┘
//	                                                   │
//	                                            single writer ──► console
//
// The console reader does not wait for children: stdin is buffered per
// session (bounded per session and in total; see stdinQueue), and output
// back-pressure stops only the readers of the sessions that produce it. Serve reaps its children; when it runs as
// PID 1 it reaps every orphan too.
package agent
