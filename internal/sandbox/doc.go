// Package sandbox is the parent side of a sandbox's life: it prepares state
// (the store row, the root filesystem images), spawns the sandbox process
// (`msb sandbox`) with its launch configuration on an inherited pipe, waits
// for the agent relay, and stops, restarts and removes sandboxes. The SDK and
// the CLI both use it; the sandbox process itself is internal/supervisor.
//
// Concurrency: every operation that changes one sandbox holds that sandbox's
// lock file (store.Lock on sandboxes/<name>/lock), so `start` racing `rm` or
// a second `start` cannot interleave.
package sandbox
