// Package procfs reads the state of a process from Linux's /proc: its start
// time, run state and CPU time from /proc/<pid>/stat, and whether a pid
// still names the process that was recorded (a pid reused by another
// process is dead to its recorder). It is the one parser of
// /proc/<pid>/stat in the tree; it depends on the standard library and
// golang.org/x/sys only.
//
// On other systems ReadStat returns errors.ErrUnsupported and Alive trusts
// kill(2) alone.
package procfs
