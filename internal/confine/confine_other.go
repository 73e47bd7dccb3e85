//go:build !linux

package confine

import "fmt"

// Landlock needs Linux.
func Landlock([]Rule) error { return fmt.Errorf("%w: landlock needs Linux", ErrUnavailable) }

// Seccomp needs Linux.
func Seccomp(Policy) error { return fmt.Errorf("%w: seccomp needs Linux", ErrUnavailable) }
