//go:build linux

package passthrough

import (
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Bounds of the usage walk at New: beyond them the walk stops and the
// quota counts from what it saw.
const (
	maxQuotaWalkEntries = 1 << 20
	maxQuotaWalkDepth   = 256
)

const statusENOSPC = fuse.Status(syscall.ENOSPC)

// quota is the write quota of a share. With limit 0 there is none and
// its methods only run the operations.
type quota struct {
	limit int64

	// mu serializes the operations that change the size of a file, so
	// that the size a file has before and after one is its own doing;
	// it protects used.
	mu   chan struct{}
	used int64
}

// measure sets q.used to the apparent size of the regular files beneath
// rootFD (or of only the file only in it), each hard-linked file once,
// and reports whether the walk saw the whole tree.
func (q *quota) measure(rootFD int, only string) bool {
	if only != "" {
		var st unix.Stat_t
		if unix.Fstatat(rootFD, only, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			q.used = st.Size
		}
		return true
	}
	seen := map[devIno]bool{}
	entries := 0
	var walk func(dirfd, depth int) bool
	walk = func(dirfd, depth int) bool {
		fd, err := openat2(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return true // unreadable: nothing the guest can grow either
		}
		d := os.NewFile(uintptr(fd), "")
		defer d.Close()
		names, _ := d.Readdirnames(-1)
		for _, name := range names {
			if entries++; entries > maxQuotaWalkEntries {
				return false
			}
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFREG:
				if st.Nlink > 1 {
					if seen[keyOf(&st)] {
						continue
					}
					seen[keyOf(&st)] = true
				}
				q.used += st.Size
			case syscall.S_IFDIR:
				if depth >= maxQuotaWalkDepth {
					return false
				}
				sub, err := openat2(fd, name, unix.O_PATH|unix.O_DIRECTORY, 0)
				if err != nil {
					continue // a mount point (EXDEV) is not served
				}
				ok := walk(sub, depth+1)
				unix.Close(sub)
				if !ok {
					return false
				}
			}
		}
		return true
	}
	return walk(rootFD, 0)
}

func (q *quota) lock()   { q.mu <- struct{}{} }
func (q *quota) unlock() { <-q.mu }

// add changes the usage by n bytes, never below zero.
//
// Preconditions: q.mu is held.
func (q *quota) add(n int64) { q.used = max(0, q.used+n) }

// resize runs op, which changes the size of the regular file open as fd
// from size to at most want(size) bytes. If that growth does not fit the
// quota, room(avail) is asked whether a smaller op fits instead (it
// returns false to refuse with ENOSPC). Afterwards the usage follows the
// file's actual size.
func (q *quota) resize(fd int, want func(size int64) int64, room func(size, avail int64) bool, op func() fuse.Status) fuse.Status {
	if q.limit <= 0 {
		return op()
	}
	q.lock()
	defer q.unlock()
	var before unix.Stat_t
	if err := unix.Fstat(fd, &before); err != nil {
		return errno(err)
	}
	if grow := want(before.Size) - before.Size; grow > 0 && grow > q.limit-q.used {
		if room == nil || !room(before.Size, q.limit-q.used) {
			return statusENOSPC
		}
	}
	st := op()
	var after unix.Stat_t
	if unix.Fstat(fd, &after) == nil {
		q.add(after.Size - before.Size)
	}
	return st
}

// removing runs op, which removes the name in dirfd (and with it the
// object named by it, if that was its last link), and then counts the
// object's size as free. op reports whether it removed the name.
func (q *quota) removing(dirfd int, name string, op func() bool) {
	if q.limit <= 0 {
		op()
		return
	}
	q.lock()
	defer q.unlock()
	var st unix.Stat_t
	last := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Nlink == 1
	if op() && last {
		q.add(-st.Size)
	}
}

// statfs scales a host statfs reply to the quota: total blocks are the
// quota, free blocks what is left of it (or the host's free blocks, if
// fewer).
func (q *quota) statfs(out *fuse.StatfsOut) {
	if q.limit <= 0 {
		return
	}
	q.lock()
	used := q.used
	q.unlock()
	bs := int64(out.Frsize)
	if bs <= 0 {
		bs = int64(out.Bsize)
	}
	if bs <= 0 {
		bs = 4096
	}
	free := uint64(max(0, q.limit-used) / bs)
	out.Blocks = uint64(q.limit / bs)
	out.Bfree = min(out.Bfree, free)
	out.Bavail = min(out.Bavail, free)
}
