package supervisor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// textRanges returns the read-only mappings of this process's own
// executable (code, read-only data, the pc-line tables), from
// /proc/self/maps. It must run before Landlock, which hides /proc.
func textRanges() ([][2]uintptr, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("text ranges: %w", err)
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("text ranges: %w", err)
	}
	return parseTextRanges(b, exe), nil
}

// parseTextRanges picks from a /proc/<pid>/maps listing the private,
// non-writable mappings of the file exe.
func parseTextRanges(maps []byte, exe string) [][2]uintptr {
	var out [][2]uintptr
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := bytes.Fields(sc.Bytes())
		if len(f) != 6 || string(f[5]) != exe {
			continue
		}
		perms := f[1]
		if len(perms) != 4 || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out
}

// trimResident gives back what start-up left resident and the sandbox's
// steady state does not use: the heap it freed, and the page-table entries
// of the executable's code and read-only data. The kernel maps file pages
// around each fault, so by the end of a boot nearly all of msb's ~19 MiB of
// text and read-only data counted in this process's RSS although an idle
// sandbox runs a small part of it. The pages stay in the page cache (shared
// with every other msb process); whatever runs later faults its pages back
// in. Only clean, read-only private mappings are dropped: MADV_DONTNEED on
// them loses nothing.
func trimResident(ranges [][2]uintptr) {
	debug.FreeOSMemory()
	for _, r := range ranges {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}
