//go:build !linux

package sandbox

import (
	"errors"
	"os/exec"
)

var errNetNS = errors.New("network namespaces exist only on Linux")

func checkNetNS(string) error              { return errNetNS }
func startInNetNS(*exec.Cmd, string) error { return errNetNS }
