package rootfs

import (
	"syscall"
	"testing"
)

// allocatedBytes reports the disk space actually used by a file.
func allocatedBytes(tb testing.TB, path string) int64 {
	tb.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		tb.Fatal(err)
	}
	return st.Blocks * 512
}
