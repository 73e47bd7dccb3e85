//go:build linux

package machine

import "os"

// HardwareVirtualization reports whether /dev/kvm is backed by real hardware
// virtualization (Intel VMX or AMD SVM) rather than a software
// implementation such as kvm_pvm, which runs the KVM-level mechanics but
// cannot boot an unmodified Linux guest. reason says why, for `--vmm auto`
// to print.
func HardwareVirtualization() (bool, string) {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, "read /proc/cpuinfo: " + err.Error()
	}
	// /proc/modules is absent in some containers; /sys/module lists loaded
	// modules there too.
	modules, _ := os.ReadFile("/proc/modules")
	_, statErr := os.Stat("/sys/module/kvm_pvm")
	if _, err := os.Stat(kvmDevice); err != nil {
		return false, kvmDevice + " is not available"
	}
	return hardwareVirt(string(cpuinfo), string(modules), statErr == nil)
}
