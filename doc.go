// Package msb is the Go SDK of msb: local, embeddable microVM sandboxes for
// untrusted code.
//
// A sandbox is one host process (the sandbox process) that owns a microVM
// booted from an OCI image or a directory, the agent relay socket, the logs
// and the sandbox's rows in the state store. Create starts one; Exec runs
// commands in it; Stop and Remove end it. The msb command-line tool is built
// on this package.
package msb
