//go:build !linux

package supervisor

import "errors"

// hardenProcess confines the sandbox process of the native VMM, which exists
// on Linux only.
func hardenProcess(rw, ro []string) (landlock error, err error) {
	return errors.ErrUnsupported, errors.ErrUnsupported
}
