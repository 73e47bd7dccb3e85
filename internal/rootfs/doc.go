// Package rootfs builds the guest's root filesystem images on the host,
// without root privileges and without external tools.
//
// The guest mounts overlay(lower, upper): the lower is a read-only EROFS image
// (built from a host directory by [PackDir] or from OCI layer tar streams by
// [BuildFromLayers]) on /dev/vda; the upper is a sparse ext4 image (made by
// [CreateUpper], copied by [CopyUpper]) on /dev/vdb whose top-level upper/ and
// work/ directories are overlayfs's upperdir and workdir.
//
// EROFS images are written with github.com/erofs/go-erofs; the pieces that
// library cannot express (hardlinks as shared inodes) are patched in by this
// package after the image is written (see hardlink.go).
package rootfs
