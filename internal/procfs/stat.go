package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"golang.org/x/sys/unix"
)

// Stat is the part of /proc/<pid>/stat msb uses (proc(5)). Times are in
// clock ticks (USER_HZ, 100 on every Linux architecture).
type Stat struct {
	PID int
	// Comm is the command name (field 2) without its parentheses. It may
	// itself hold spaces and parentheses.
	Comm string
	// State is field 3: R, S, D, Z, T, t, X, I, …
	State     byte
	PPID      int
	UTime     uint64 // field 14
	STime     uint64 // field 15
	StartTime int64  // field 22: clock ticks after boot
}

// Exited reports whether the state is a zombie or dead one: the process has
// exited and only awaits (or has had) its reaping.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// ParseStat parses the contents of /proc/<pid>/stat. proc(5): the comm
// field (2) is in parentheses and may itself contain ") ", so comm runs from
// the first '(' to the last ')' and the other fields are counted after it.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return Stat{}, errors.New("parse proc stat: no comm field")
	}
	var st Stat
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("parse proc stat pid: %w", err)
	}
	st.PID, st.Comm = pid, string(b[open+1:closing])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	fields := bytes.Fields(b[closing+1:])
	if len(fields) < 22-3+1 || len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("parse proc stat: %d fields after comm", len(fields))
	}
	st.State = fields[0][0]
	if st.PPID, err = strconv.Atoi(string(fields[4-3])); err != nil {
		return Stat{}, fmt.Errorf("parse proc stat ppid: %w", err)
	}
	if st.UTime, err = strconv.ParseUint(string(fields[14-3]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("parse proc stat utime: %w", err)
	}
	if st.STime, err = strconv.ParseUint(string(fields[15-3]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("parse proc stat stime: %w", err)
	}
	if st.StartTime, err = strconv.ParseInt(string(fields[22-3]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("parse proc stat starttime: %w", err)
	}
	return st, nil
}

// StartTime returns pid's start time in clock ticks after boot, the value
// Alive compares to tell a reused pid apart.
func StartTime(pid int) (int64, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return st.StartTime, nil
}

// Alive reports whether pid still names the process that started at
// startTime (clock ticks after boot; 0 means unknown and skips the check).
// kill(pid, 0) decides existence: EPERM means the process exists but
// belongs to someone else, so it is alive. A zombie has exited and counts
// as dead. When /proc shows a different start time the pid was reused by
// another process: dead, and so is a pid whose /proc entry vanished after
// kill (reaped in between). When /proc is unreadable (hidepid) or absent
// (not Linux), Alive trusts kill.
func Alive(pid int, startTime int64) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	st, err := ReadStat(pid)
	if reaped(err) {
		return false
	}
	if err != nil {
		return true
	}
	if st.Exited() {
		return false
	}
	return startTime == 0 || st.StartTime == startTime
}

// reaped reports whether err from reading /proc/pid/stat means the process
// is gone: reaped between kill and the open (no such file), or between the
// open and the read, which then fails with ESRCH (a parent's reaper
// goroutine did that in about 2 of 100 runs of the sandbox package's
// TestStopForce, and Alive called the process alive).
func reaped(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)
}
