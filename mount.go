package msb

import "github.com/msb-go/msb/internal/launch"

// Mount options give the guest more file systems than its root. Guest paths
// are absolute and clean, not /, and hold no ':' or ';'; two mounts on one
// guest path make Create fail. A host path that does not exist is not an
// error at Create: the sandbox then fails to boot at stage "mount".

// WithVolume shares the host directory hostDir read-write at guestPath
// (over virtio-fs; a relative hostDir is resolved against the working
// directory at Create). Single files cannot be shared yet: share their
// directory.
func WithVolume(hostDir, guestPath string) Option {
	return mount(launch.Mount{Kind: launch.MountBind, Source: hostDir, Target: guestPath})
}

// WithVolumeReadOnly is WithVolume with a read-only mount.
func WithVolumeReadOnly(hostDir, guestPath string) Option {
	return mount(launch.Mount{Kind: launch.MountBind, Source: hostDir, Target: guestPath, ReadOnly: true})
}

// WithVolumeSubmounts is WithVolume for a directory that the caller mounts
// file systems into, also while the sandbox runs: the guest sees what is
// mounted below hostDir (WithVolume stops at a mount point). The containerd
// shim shares a pod's directory this way and mounts each container's root
// into it as the container is created. Names still resolve beneath hostDir.
func WithVolumeSubmounts(hostDir, guestPath string) Option {
	return mount(launch.Mount{Kind: launch.MountBind, Source: hostDir, Target: guestPath, Submounts: true})
}

// WithNamedVolume mounts the named volume name ($MSB_HOME/volumes/NAME) at
// guestPath, creating it if it does not exist. Named volumes outlive the
// sandboxes that use them (`msb volume rm` deletes one).
func WithNamedVolume(name, guestPath string, readOnly bool) Option {
	return mount(launch.Mount{Kind: launch.MountBind, Volume: name, Target: guestPath, ReadOnly: readOnly})
}

// WithTmpfs mounts a memory-backed tmpfs at guestPath, bounded to sizeMiB
// (0: the guest kernel's default, half of the guest's memory).
func WithTmpfs(guestPath string, sizeMiB int) Option {
	return mount(launch.Mount{Kind: launch.MountTmpfs, Target: guestPath, SizeMiB: sizeMiB})
}

// WithDisk attaches the host disk image imagePath (raw, holding a file
// system the guest detects, such as ext4) as an extra virtio-blk disk and
// mounts it at guestPath. One image backs at most one disk of a sandbox.
func WithDisk(imagePath, guestPath string, readOnly bool) Option {
	return mount(launch.Mount{Kind: launch.MountDisk, Source: imagePath, Target: guestPath, ReadOnly: readOnly})
}

func mount(m launch.Mount) Option {
	return func(c *config) { c.mounts = append(c.mounts, m) }
}

// Mount is one of a sandbox's extra file systems, as Info reports it.
type Mount struct {
	Kind     string // "bind", "tmpfs" or "disk"
	Source   string `json:",omitempty"` // host directory or image
	Target   string // guest path
	ReadOnly bool   `json:",omitempty"`
	Volume   string `json:",omitempty"` // the named volume a bind comes from
	SizeMiB  int    `json:",omitempty"` // a tmpfs's bound
}

func toMounts(ms []launch.Mount) []Mount {
	if len(ms) == 0 {
		return nil
	}
	out := make([]Mount, len(ms))
	for i, m := range ms {
		out[i] = Mount{Kind: m.Kind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, Volume: m.Volume, SizeMiB: m.SizeMiB}
	}
	return out
}
