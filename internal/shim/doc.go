// Package shim is msb's containerd runtime v2 shim (runtime name
// io.containerd.msb.v2): one shim process per container (ctr run) or per
// Kubernetes pod, serving containerd's task API (containerd.task.v2.Task
// over ttrpc) and running the OCI bundles as the workloads of one msb
// sandbox. A pod's containers run in its one VM, each chrooted to its own
// root (pod.go).
//
// It speaks the shim protocol containerd 1.6 and 1.7 use: `start` binds the
// task socket, re-executes the shim as the long-running server and prints
// the socket's address; `delete` cleans up after a dead server. That is why
// it does not use containerd v2's pkg/shim: from v2.3 that library only
// accepts the new bootstrap protocol (a BootstrapParams message on stdin),
// which containerd 1.6 does not send. The wire types come from
// github.com/containerd/containerd/api, which carries both task API versions.
//
// A container maps onto msb like this:
//
//	Create  read bundle/config.json; mount the snapshotter's rootfs mounts
//	        on bundle/rootfs (containerd's own mount code, as runc's shim)
//	Start   boot a sandbox on bundle/rootfs served live (msb.WithRootfsLive)
//	        and run the spec's process in it with the stdio fifos connected
//	Exec    run another command in the same sandbox (its own fifos, tty)
//	Kill    signal the process's group in the guest
//	Wait    the process's exit status (128+signal when killed)
//	Delete  remove the sandbox, unmount the rootfs, drop the shim's state
//
// msb's state for the container lives under stateRoot/<hash of namespace
// and id> (MSB_HOME for the SDK), never in the user's ~/.msb.
package shim
