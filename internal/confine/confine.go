package confine

import "errors"

// ErrUnavailable reports a kernel or build where a confinement mechanism
// cannot be applied.
var ErrUnavailable = errors.New("confinement unavailable")

// Rule grants access beneath Path (a directory) or to Path (a file): read
// always, write (create, remove, truncate…) and execute on request.
type Rule struct {
	Path     string
	Write    bool
	Exec     bool
	Required bool // fail rather than skip when Path does not exist
}

// Policy is a seccomp allow-list. Everything not listed fails with EPERM
// (not a kill, so an omission shows up as an error in runtime.log).
type Policy struct {
	// Syscalls are allowed with any arguments.
	Syscalls []string
	// SocketFamilies, if not empty, allows socket(2) for these address
	// families only (unix.AF_INET, unix.AF_INET6): no new unix sockets,
	// netlink or packet sockets.
	SocketFamilies []int
	// IoctlTypes allows ioctl(2) whose request has one of these type bytes
	// (_IOC_TYPE: 0xAE for KVM); IoctlRequests allows exact requests.
	IoctlTypes    []uint8
	IoctlRequests []uint64
	// Threads allows clone(2) only with CLONE_THREAD: new threads, never new
	// processes. clone3 is refused (its flags sit behind a pointer).
	Threads bool
	// KillPIDs allows kill(2) only to these pids; tgkill(2) only within
	// this process.
	KillPIDs []int
}
