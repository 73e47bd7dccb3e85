package store

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// processAlive reports whether pid still names the process recorded with
// startTicks. kill(pid, 0) decides existence (EPERM means it exists but
// belongs to someone else: alive, reference §4.3). A zombie has exited and
// counts as dead. When startTicks is known and /proc shows a different
// start time, the pid was reused by another process: dead.
func processAlive(pid int, startTicks sql.NullInt64) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	st, err := readProcStat(pid)
	if err != nil {
		return true // exists per kill; /proc unreadable (hidepid) or absent (not Linux): trust kill
	}
	if st.state == 'Z' || st.state == 'X' {
		return false
	}
	if startTicks.Valid && st.startTicks != startTicks.Int64 {
		return false
	}
	return true
}

// processStartTicks returns pid's start time in clock ticks since boot.
func processStartTicks(pid int) (int64, bool) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, false
	}
	return st.startTicks, true
}

type procStat struct {
	state      byte
	startTicks int64
}

// parseProcStat parses the contents of /proc/<pid>/stat. proc(5): the comm
// field (2) is in parentheses and may itself contain ") ", so fields are
// counted from the last ')'; state is field 3 and starttime field 22.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse proc stat: no comm field")
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("parse proc stat: %d fields after comm", len(fields))
	}
	start, err := strconv.ParseInt(string(fields[19]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("parse proc stat starttime: %w", err)
	}
	return procStat{state: fields[0][0], startTicks: start}, nil
}
