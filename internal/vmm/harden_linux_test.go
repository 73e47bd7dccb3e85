package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/vmm/kvm/kvmtest"
)

// hardenChildEnv makes the test binary act as a hardened VMM process
// (seccomp filters cannot be removed, so the test needs its own process).
const hardenChildEnv = "MSB_VMM_HARDEN_CHILD_KERNEL"

// hardenChild builds a Machine, hardens the process, runs the guest and
// checks that syscalls outside the allow-list fail. It returns the exit
// code.
func hardenChild(kernel string) int {
	var console syncBuffer
	m, err := New(Config{Kernel: kernel, VCPUs: 2, MemoryMiB: 64, Console: &console})
	if err != nil {
		fmt.Println("New:", err)
		return 1
	}
	defer m.Close()
	if err := Harden(Hardening{}); err != nil {
		fmt.Println("Harden:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		fmt.Println("Run:", err)
		return 1
	}
	if console.String() != "hardened\n" {
		fmt.Printf("console %q\n", console.String())
		return 1
	}
	failed := false
	for name, try := range map[string]func() error{
		"socket": func() error { _, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0); return err },
		"open":   func() error { f, err := os.Open("/etc/hostname"); f.Close(); return err },
		"exec":   func() error { return exec.Command("/bin/true").Run() },
	} {
		if err := try(); !errors.Is(err, syscall.EPERM) {
			fmt.Printf("%s after Harden: %v; want EPERM\n", name, err)
			failed = true
		}
	}
	if failed {
		return 1
	}
	fmt.Println("hardened run ok")
	return 0
}

func TestHardenedRun(t *testing.T) {
	kvmtest.Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hardenChildEnv+"="+helloKernel(t, "hardened\n"))
	out, err := cmd.CombinedOutput()
	t.Logf("hardened child output: %s", out)
	if err != nil || !strings.Contains(string(out), "hardened run ok") {
		t.Errorf("hardened child: %v\n%s", err, out)
	}
}

func TestHardenDisabled(t *testing.T) {
	// Disable must not touch the process (this test process stays
	// unfiltered: a later test can still open files).
	if err := Harden(Hardening{Disable: true}); err != nil {
		t.Fatalf("Harden(Disable) = %v", err)
	}
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatalf("open after disabled Harden: %v", err)
	}
	f.Close()
}
