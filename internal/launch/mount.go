package launch

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Kinds of Mount.
const (
	MountBind  = "bind"  // a host directory served over virtio-fs
	MountTmpfs = "tmpfs" // a guest tmpfs
	MountDisk  = "disk"  // a host disk image as an extra virtio-blk device
)

// Mount is one guest mount the sandbox process provides (reference §10.3).
// Named volumes arrive as binds of their data directory.
type Mount struct {
	Kind string `json:"kind"`
	// Source is the absolute host path: the directory of a bind (for a
	// named volume, MSB_HOME/volumes/NAME/data) or the image of a disk.
	Source string `json:"source,omitempty"`
	// Target is the absolute guest path.
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Volume names the named volume a bind comes from, for inspect.
	Volume string `json:"volume,omitempty"`
	// SizeMiB bounds a tmpfs (0: the kernel's default, half of RAM).
	SizeMiB int `json:"size_mib,omitempty"`
	// FSType is a disk's file system ("" lets the guest probe).
	FSType string `json:"fstype,omitempty"`
	// QuotaBytes bounds what the guest may store in a bind (the
	// apparent size of its regular files); growth beyond it fails with
	// ENOSPC and the guest's df shows it as the size. 0: no quota. Named
	// volumes get their volume's quota; plain binds have none unless a
	// caller sets it.
	QuotaBytes int64 `json:"quota_bytes,omitempty"`
	// Submounts serves the file systems mounted below a bind's source
	// too, also those mounted after boot (passthrough.Options.Submounts).
	Submounts bool `json:"submounts,omitempty"`
}

// ErrBadMount reports an invalid Mount.
var ErrBadMount = errors.New("invalid mount")

// Validate checks m as the reference's rules say: an absolute, clean guest
// path that is not / and holds no ':' or ';' (they separate the guest's
// mount lists), an absolute host source for binds and disks, and an fstype
// without separators.
func (m Mount) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadMount, fmt.Sprintf(format, a...))
	}
	switch m.Kind {
	case MountBind, MountDisk:
		if !path.IsAbs(m.Source) {
			return bad("%s source %q is not an absolute host path", m.Kind, m.Source)
		}
	case MountTmpfs:
		if m.Source != "" {
			return bad("a tmpfs has no source")
		}
	default:
		return bad("unknown kind %q", m.Kind)
	}
	if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target || m.Target == "/" {
		return bad("guest path %q must be absolute, clean and not /", m.Target)
	}
	if strings.ContainsAny(m.Target, ":;,\x00\n") {
		return bad("guest path %q must not contain ':', ';', ',' or newlines", m.Target)
	}
	if strings.ContainsAny(m.FSType, ",;:= ") {
		return bad("fstype %q must not contain ',', ';', ':', '=' or spaces", m.FSType)
	}
	if m.SizeMiB < 0 {
		return bad("negative size")
	}
	if m.QuotaBytes < 0 {
		return bad("negative quota")
	}
	if m.QuotaBytes != 0 && m.Kind != MountBind {
		return bad("a %s has no quota", m.Kind)
	}
	if m.Submounts && m.Kind != MountBind {
		return bad("a %s has no submounts", m.Kind)
	}
	if m.Submounts && m.QuotaBytes != 0 {
		return bad("a bind with submounts cannot have a quota")
	}
	return nil
}
