// Command kvmprobe runs inside the nested harness's L1 guest (TestNestedKVM):
// it opens /dev/kvm through internal/vmm/kvm and prints one line with the
// API version, whether the kvm package sees real hardware virtualization,
// the capabilities msb's VMM needs, and whether a VM and a vCPU can be
// created. It exits non-zero when any step fails.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm/kvm"
)

func main() {
	if err := run(); err != nil {
		fmt.Println("kvmprobe: error:", err)
		os.Exit(1)
	}
}

func run() error {
	sys, err := kvm.Open()
	if err != nil {
		return err
	}
	defer sys.Close()
	api, err := sys.APIVersion()
	if err != nil {
		return err
	}
	hw, reason := machine.HardwareVirtualization()
	caps := []struct {
		name string
		cap  kvm.Cap
	}{
		{"irqchip", kvm.KVM_CAP_IRQCHIP},
		{"user_memory", kvm.KVM_CAP_USER_MEMORY},
		{"irqfd", kvm.KVM_CAP_IRQFD},
		{"pit2", kvm.KVM_CAP_PIT2},
		{"ioeventfd", kvm.KVM_CAP_IOEVENTFD},
		{"immediate_exit", kvm.KVM_CAP_IMMEDIATE_EXIT},
	}
	var missing []string
	for _, c := range caps {
		if n, err := sys.CheckExtension(c.cap); err != nil || n == 0 {
			missing = append(missing, c.name)
		}
	}
	vm, err := sys.CreateVM()
	if err != nil {
		return err
	}
	defer vm.Close()
	vcpu, err := vm.CreateVCPU(0)
	if err != nil {
		return err
	}
	defer vcpu.Close()
	fmt.Printf("kvmprobe: api=%d hwvirt=%t missing_caps=%s vcpu=ok reason=%q\n",
		api, hw, strings.Join(missing, ","), reason)
	return nil
}
