package machine

import "testing"

func TestHardwareVirt(t *testing.T) {
	const (
		vmxInfo  = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx ept\n\nprocessor\t: 1\nflags\t\t: fpu vmx\n"
		svmInfo  = "processor\t: 0\nflags\t\t: fpu svm npt\n"
		noneInfo = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor\n"
		vmxName  = "processor\t: 0\nmodel name\t: vmx svm lookalike\nflags\t\t: fpu\n"
		pvmMods  = "kvm_pvm 36864 0 - Live 0x0000000000000000\nkvm 1142784 1 kvm_pvm, Live 0x0\n"
		intelMod = "kvm_intel 380928 0 - Live 0x0\nkvm 1142784 1 kvm_intel, Live 0x0\n"
	)
	tests := []struct {
		name    string
		cpuinfo string
		modules string
		pvmSys  bool
		want    bool
	}{
		{"vmx", vmxInfo, intelMod, false, true},
		{"svm", svmInfo, "", false, true},
		{"no flag", noneInfo, intelMod, false, false},
		{"flag word only in model name", vmxName, "", false, false},
		{"pvm in proc modules", vmxInfo, pvmMods, false, false},
		{"pvm in sysfs only", svmInfo, "", true, false},
		{"empty", "", "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := hardwareVirt(tc.cpuinfo, tc.modules, tc.pvmSys)
			if got != tc.want {
				t.Errorf("hardwareVirt() = %v (%s); want %v", got, reason, tc.want)
			}
			if reason == "" {
				t.Errorf("hardwareVirt() reason is empty")
			}
		})
	}
}

// TestHardwareVirtualizationHost runs the real probe; on these kvm_pvm
// machines it must say no, and say why.
func TestHardwareVirtualizationHost(t *testing.T) {
	ok, reason := HardwareVirtualization()
	t.Logf("HardwareVirtualization() = %v, %q", ok, reason)
	if reason == "" {
		t.Errorf("HardwareVirtualization() reason is empty")
	}
}
