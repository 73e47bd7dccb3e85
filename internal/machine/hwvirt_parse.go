package machine

import (
	"bufio"
	"strings"
)

// hardwareVirt is the decision behind HardwareVirtualization, separated for
// tests.
func hardwareVirt(cpuinfo, modules string, pvmInSysfs bool) (bool, string) {
	flag := cpuFlag(cpuinfo)
	if flag == "" {
		return false, "no vmx or svm flag in /proc/cpuinfo"
	}
	if pvmInSysfs || moduleLoaded(modules, "kvm_pvm") {
		return false, "/dev/kvm is kvm_pvm (software nested virtualization)"
	}
	return true, flag + " present and kvm_pvm not loaded"
}

// cpuFlag returns "vmx" or "svm" if the first processor's flags list one.
func cpuFlag(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return f
			}
		}
		return ""
	}
	return ""
}

// moduleLoaded reports whether /proc/modules content lists name.
func moduleLoaded(modules, name string) bool {
	for line := range strings.Lines(modules) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}
