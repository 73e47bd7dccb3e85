//go:build !linux

package supervisor

import "runtime/debug"

func textRanges() ([][2]uintptr, error) { return nil, nil }

// trimResident returns the heap start-up freed to the operating system.
func trimResident([][2]uintptr) { debug.FreeOSMemory() }
