// Package runtime holds the building blocks of the sandbox process (the hidden
// `msb sandbox` entry point): boot-error reporting, rotating log files, the
// exec.log writer and reader, the guest heartbeat, the agent relay that
// multiplexes socket clients onto the guest console, process metrics and the
// idle/max-duration policy watcher.
//
// The pieces are independent; the sandbox process main wires them together.
// File formats and semantics follow microsandbox 0.4.4 (reference §2, §3.4,
// §4, §5, §6) except where a doc comment says msb does better.
package runtime
