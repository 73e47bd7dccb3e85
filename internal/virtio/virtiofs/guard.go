package virtiofs

import "github.com/hanwen/go-fuse/v2/fuse"

// guard wraps the served file system with the refusals that keep the
// device itself safe and responsive, whatever the file system does. It
// forwards every other operation; confinement to the share (names, node
// IDs, handles, symlinks, read-only) is the file system's job, see the
// package documentation.
//
//   - IOCTL fails with ENOSYS: it would hand guest-chosen ioctl numbers
//     and buffers to host file descriptors.
//   - GETLK, SETLK and SETLKW fail with ENOSYS (the device does not offer
//     lock support, so the guest kernel keeps locks local): a SETLKW on a
//     file the host keeps locked would block a request forever, and with
//     it Reset and Close, which wait for requests in flight.
type guard struct {
	fuse.RawFileSystem
}

func (g guard) Ioctl(<-chan struct{}, *fuse.IoctlIn, []byte, *fuse.IoctlOut, []byte) fuse.Status {
	return fuse.ENOSYS
}

func (g guard) GetLk(<-chan struct{}, *fuse.LkIn, *fuse.LkOut) fuse.Status { return fuse.ENOSYS }
func (g guard) SetLk(<-chan struct{}, *fuse.LkIn) fuse.Status              { return fuse.ENOSYS }
func (g guard) SetLkw(<-chan struct{}, *fuse.LkIn) fuse.Status             { return fuse.ENOSYS }

func (g guard) String() string { return "virtiofs(" + g.RawFileSystem.String() + ")" }
