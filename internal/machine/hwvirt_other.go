//go:build !linux

package machine

// HardwareVirtualization reports whether /dev/kvm is backed by real hardware
// virtualization; KVM exists on Linux hosts only.
func HardwareVirtualization() (bool, string) {
	return false, "KVM needs a Linux host"
}
