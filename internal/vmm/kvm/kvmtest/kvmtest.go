//go:build linux

// Package kvmtest gates tests that need a usable /dev/kvm, with containerd
// semantics: they skip where KVM is unavailable, unless MSB_REQUIRE_KVM=1
// asks for them to fail instead so that a KVM CI runner cannot pass quietly.
package kvmtest

import (
	"os"
	"testing"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm/kvm"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "MSB_REQUIRE_KVM"

// Require returns an open /dev/kvm, closed at the end of the test, after
// checking that a VM can actually be created. It skips the test when KVM is
// absent or unusable (missing node, permissions, wrong API version), and
// fails it instead when MSB_REQUIRE_KVM=1.
func Require(t testing.TB) *kvm.System {
	t.Helper()
	return require(t, kvm.Open)
}

// require is Require with the opener injected for tests.
func require(t testing.TB, open func() (*kvm.System, error)) *kvm.System {
	t.Helper()
	sys, err := open()
	if err == nil {
		var vm *kvm.VM
		vm, err = sys.CreateVM()
		if err == nil {
			vm.Close()
			t.Cleanup(func() { sys.Close() })
			return sys
		}
		sys.Close()
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("kvm unusable and %s=1: %v", RequireEnv, err)
		return nil
	}
	t.Skipf("kvm unusable (set %s=1 to fail instead): %v", RequireEnv, err)
	return nil
}

// HardwareVirt reports whether /dev/kvm is backed by real VMX/SVM (not
// kvm_pvm), which booting an unmodified Linux guest needs.
func HardwareVirt() bool {
	ok, _ := machine.HardwareVirtualization()
	return ok
}

// RequireHardwareVirt is Require plus HardwareVirt. Without real hardware
// virtualization it always skips, even under MSB_REQUIRE_KVM=1: the CI KVM
// runners are kvm_pvm hosts, where such tests cannot run.
func RequireHardwareVirt(t testing.TB) *kvm.System {
	t.Helper()
	sys := Require(t)
	if ok, reason := machine.HardwareVirtualization(); !ok {
		t.Skipf("no hardware virtualization: %s", reason)
	}
	return sys
}
