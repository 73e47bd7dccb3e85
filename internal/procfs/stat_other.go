//go:build !linux

package procfs

import "errors"

// ReadStat needs /proc, which only Linux has.
func ReadStat(pid int) (Stat, error) {
	return Stat{}, errors.ErrUnsupported
}
