// Package sandbox is the parent side of a sandbox's life: it prepares state
// (the store row, the root filesystem images), spawns the sandbox process
// (`msb sandbox`) with its launch configuration on an inherited pipe, waits
// for the agent relay, and stops, restarts and removes sandboxes. The SDK and
// the CLI both use it; the sandbox process itself is internal/supervisor,
// and the contract between them is internal/launch.
//
// Manager composes one part per concern, each in its own file:
//
//	provisioner.go  image or directory → EROFS lower + per-sandbox ext4 upper, patches
//	binaries.go     the msb binary, guest kernel and agentd to boot with
//	launcher.go     the launch document; spawn, the startup pipe, boot errors
//	process.go      a started sandbox process: reaping, the watchdog pipe (parent death)
//	lifecycle.go    stop (SIGTERM, then SIGKILL; force) and remove
//	proc.go         a recorded process named by pid + start time, held by a pidfd
//	query.go        Get, List, Metrics
//
// Concurrency: every operation that changes one sandbox holds that sandbox's
// lock file (store.Lock on sandboxes/<name>/lock), so `start` racing `rm` or
// a second `start` cannot interleave.
package sandbox
