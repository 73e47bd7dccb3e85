// Package launch is the contract between the parent (the msb CLI or the Go
// SDK) and the sandbox process it spawns, and the files both read: the launch
// document and the descriptors it arrives on, the startup reply,
// logs/boot-error.json with its stages and hints, the rotating log files,
// exec.log and heartbeat.json.
//
// It imports only the standard library, so the SDK can speak the contract
// without linking the sandbox process (the VMM, seccomp, go-fuse). File
// formats follow microsandbox 0.4.4 (reference §2, §5, §6) except where a doc
// comment says msb does better.
package launch
