package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/msb-go/msb/internal/guestkernel"
)

// binaries are the host files a sandbox process needs: the msb binary it
// runs as, the guest kernel and the static guest agent. QEMU is not among
// them: finding it ($MSB_QEMU, PATH) is the sandbox process's business, so
// the parent never links the VMM packages.
type binaries struct {
	exe, kernel, agentd string
}

// findBinaries locates the binaries; exe, when not empty, is the msb binary
// (Manager.Exe).
func findBinaries(exe string) (binaries, error) {
	var b binaries
	var err error
	if b.exe, err = findExe(exe); err != nil {
		return binaries{}, err
	}
	if b.kernel, err = locateKernel(b.exe); err != nil {
		return binaries{}, err
	}
	if b.agentd, err = locateAgentd(b.exe); err != nil {
		return binaries{}, err
	}
	return b, nil
}

// findExe finds the msb binary to spawn as the sandbox process: exe if
// given, else $MSB_PATH, else the running executable when it is msb itself,
// else msb on PATH. (A program using the SDK is not msb; it must not spawn
// itself.)
func findExe(exe string) (string, error) {
	if exe != "" {
		return exe, nil
	}
	if p := os.Getenv("MSB_PATH"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("MSB_PATH: %w", err)
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil && filepath.Base(self) == "msb" {
		return self, nil
	}
	p, err := exec.LookPath("msb")
	if err != nil {
		return "", errors.New("msb binary not found: install it on PATH or set MSB_PATH")
	}
	return filepath.Abs(p)
}

// locateKernel finds the guest kernel: $MSB_KERNEL, else "vmlinux" beside
// the msb binary, else the kernel build cache.
func locateKernel(msbExe string) (string, error) {
	if os.Getenv("MSB_KERNEL") == "" {
		p := filepath.Join(filepath.Dir(msbExe), "vmlinux")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return guestkernel.Locate()
}

// locateAgentd finds the guest agent binary: $MSB_AGENTD, else "agentd"
// beside the msb binary.
func locateAgentd(exe string) (string, error) {
	if p := os.Getenv("MSB_AGENTD"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("MSB_AGENTD: %w", err)
		}
		return p, nil
	}
	p := filepath.Join(filepath.Dir(exe), "agentd")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("agentd not found beside %s: build it with `make build` or set MSB_AGENTD", exe)
	}
	return p, nil
}
