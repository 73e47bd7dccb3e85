// Package hostmem makes the host memory a QEMU guest's RAM lives in when
// it must be shared with vhost-user back-ends.
//
// Shared guest RAM is normally a memfd, and Linux backs memfds with huge
// pages only when the machine-wide shmem_enabled setting allows it, which
// it does not by default ("never"). So every page of a QEMU guest with
// vhost-user devices is mapped 4 KiB at a time, where QEMU's private RAM
// (no vhost-user devices) gets transparent huge pages: one fault per
// 2 MiB. A tmpfs mounted with huge=always allocates 2 MiB pages whatever
// shmem_enabled says (unless it is "deny"), and QEMU maps a file on it
// 2 MiB-aligned (memory-backend-file align=2M), so the guest's RAM is
// mapped 2 MiB at a time again.
//
// Huge mounts that tmpfs in a mount namespace of its own, on one OS thread
// that is thrown away afterwards, creates the file, and detaches the mount:
// nothing appears in the host's mount table, and the file system goes away
// with the last descriptor or mapping of the file. That needs
// CAP_SYS_ADMIN. Without it, Huge runs this binary again as a helper
// (HelperArg, HelperMain) in a new user and mount namespace, where an
// unprivileged user may mount tmpfs, and receives the file over a socket.
// Where user namespaces are off too, the caller keeps the memfd.
package hostmem
