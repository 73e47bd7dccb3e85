package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/msb-go/msb/internal/procfs"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat. The kernel reports
// clock_t in USER_HZ, which is 100 on every architecture Linux ships with
// (include/asm-generic/param.h), independent of CONFIG_HZ.
const userHZ = 100

// SampleProcess reads the CPU time, resident memory and block I/O counters of
// pid from /proc. A missing /proc/<pid>/io (no task I/O accounting, or no
// permission) leaves the I/O counters zero.
func SampleProcess(pid int) (ProcSample, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	var s ProcSample

	st, err := procfs.ReadStat(pid)
	if err != nil {
		return ProcSample{}, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	s.CPUTime = time.Duration(st.UTime+st.STime) * (time.Second / userHZ)

	statm, err := os.ReadFile(dir + "/statm")
	if err != nil {
		return ProcSample{}, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	pages, err := parseProcStatmRSS(statm)
	if err != nil {
		return ProcSample{}, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	s.RSSBytes = pages * uint64(os.Getpagesize())

	io, err := os.ReadFile(dir + "/io")
	switch {
	case err == nil:
		s.ReadBytes, s.WriteBytes = parseProcIO(io)
	case errors.Is(err, fs.ErrNotExist) && pidExists(dir):
		// Kernel without CONFIG_TASK_IO_ACCOUNTING.
	case errors.Is(err, fs.ErrPermission):
	default:
		return ProcSample{}, fmt.Errorf("sample pid %d: %w", pid, err)
	}
	return s, nil
}

func pidExists(dir string) bool {
	_, err := os.Stat(dir)
	return err == nil
}

// parseProcStatmRSS returns the resident field (the second) of statm in pages.
func parseProcStatmRSS(statm []byte) (uint64, error) {
	fields := bytes.Fields(statm)
	if len(fields) < 2 {
		return 0, fmt.Errorf("parse /proc statm: %d fields", len(fields))
	}
	n, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc statm resident: %w", err)
	}
	return n, nil
}

// parseProcIO returns read_bytes and write_bytes from /proc/<pid>/io; lines it
// does not know are ignored.
func parseProcIO(data []byte) (read, write uint64) {
	for line := range bytes.Lines(data) {
		key, val, ok := bytes.Cut(bytes.TrimSpace(line), []byte(":"))
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			continue
		}
		switch string(key) {
		case "read_bytes":
			read = n
		case "write_bytes":
			write = n
		}
	}
	return read, write
}
