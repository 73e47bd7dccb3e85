//go:build !linux

package store

import "errors"

// readProcStat needs /proc, which only Linux has; processAlive then trusts
// kill(2) alone, and a run records no start time.
func readProcStat(pid int) (procStat, error) {
	return procStat{}, errors.ErrUnsupported
}
