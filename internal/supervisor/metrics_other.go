//go:build !linux

package supervisor

import (
	"errors"
	"fmt"
)

// SampleProcess reads a process's counters from /proc, which only Linux
// has.
func SampleProcess(pid int) (ProcSample, error) {
	return ProcSample{}, fmt.Errorf("sample process %d: %w", pid, errors.ErrUnsupported)
}
