package agent

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// The exec shim applies per-exec rlimits between fork and exec. Go's
// os.StartProcess cannot run code in the forked child, and prlimit on the
// child after the fact races with it (a fast child observes the old
// limits), so a session with rlimits starts agentd itself again
// (/proc/self/exe, a magic link that also works after the root pivot) as
//
//	argv = [shimArg0, "<resource>=<soft>:<hard>,…", <path>, <argv0>, <args>…]
//
// with the error pipe as fd 3. The shim sets the limits and execs path; on
// failure it writes a shimFailure to fd 3 and exits 127. A successful exec
// closes fd 3 (close-on-exec), which the parent sees as EOF.
const (
	shimArg0  = "msb-agentd-exec-shim"
	shimExe   = "/proc/self/exe"
	shimErrFD = 3
)

// Shim failure stages, the first byte of the 5-byte report.
const (
	shimStageRlimit byte = 1
	shimStageExec   byte = 2
)

// runShimIfRequested turns the process into the exec shim when it was
// started as one; it returns only otherwise.
func runShimIfRequested() {
	if len(os.Args) < 4 || os.Args[0] != shimArg0 {
		return
	}
	stage, err := runShim(os.Args[1], os.Args[2], os.Args[3:])
	var report [5]byte
	report[0] = stage
	errno, _ := err.(syscall.Errno)
	if errno == 0 {
		errno = unix.EINVAL
	}
	binary.BigEndian.PutUint32(report[1:], uint32(errno))
	unix.Write(shimErrFD, report[:])
	os.Exit(127)
}

func runShim(limits, path string, argv []string) (byte, error) {
	unix.CloseOnExec(shimErrFD)
	for l := range strings.SplitSeq(limits, ",") {
		if l == "" {
			continue
		}
		res, soft, hard, err := parseShimLimit(l)
		if err != nil {
			return shimStageRlimit, unix.EINVAL
		}
		// x/sys's Prlimit on ourselves also tells the Go runtime not to
		// restore its saved RLIMIT_NOFILE at exec.
		if err := unix.Prlimit(0, res, &unix.Rlimit{Cur: soft, Max: hard}, nil); err != nil {
			return shimStageRlimit, err
		}
	}
	return shimStageExec, syscall.Exec(path, argv, os.Environ())
}

func formatShimLimits(limits []agentproto.Rlimit) (string, error) {
	var parts []string
	for _, l := range limits {
		res, ok := rlimitResources[l.Resource]
		if !ok {
			return "", fmt.Errorf("rlimit %q: unknown resource", l.Resource)
		}
		if l.Soft > l.Hard {
			return "", fmt.Errorf("rlimit %s: soft limit %d above hard limit %d", l.Resource, l.Soft, l.Hard)
		}
		parts = append(parts, fmt.Sprintf("%d=%d:%d", res, l.Soft, l.Hard))
	}
	return strings.Join(parts, ","), nil
}

func parseShimLimit(s string) (res int, soft, hard uint64, err error) {
	r, v, ok1 := strings.Cut(s, "=")
	so, ha, ok2 := strings.Cut(v, ":")
	if !ok1 || !ok2 {
		return 0, 0, 0, unix.EINVAL
	}
	if res, err = strconv.Atoi(r); err != nil {
		return 0, 0, 0, err
	}
	if soft, err = strconv.ParseUint(so, 10, 64); err != nil {
		return 0, 0, 0, err
	}
	if hard, err = strconv.ParseUint(ha, 10, 64); err != nil {
		return 0, 0, 0, err
	}
	return res, soft, hard, nil
}

// readShimReport waits for the shim's exec: nil on EOF (exec succeeded),
// else the reported failure.
func readShimReport(r *os.File) (stage byte, err error) {
	var report [5]byte
	n, rerr := r.Read(report[:])
	for n > 0 && n < len(report) && rerr == nil {
		var m int
		m, rerr = r.Read(report[n:])
		n += m
	}
	if n < len(report) {
		return 0, nil
	}
	return report[0], syscall.Errno(binary.BigEndian.Uint32(report[1:]))
}
