package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/e2etest/nested"
	"github.com/msb-go/msb/internal/guestkernel"
)

var (
	kvmprobeRE  = regexp.MustCompile(`(?m)^kvmprobe: api=(\d+) hwvirt=(\w+) missing_caps=(\S*) vcpu=ok`)
	nestedvmmRE = regexp.MustCompile(`(?m)^nestedvmm: run=(.*)$`)
)

// TestNestedKVM boots one L1 guest with a real (emulated-SVM) /dev/kvm
// (internal/e2etest/nested) and checks, in that one boot: the harness
// delivers files and reports the script's exit status, /dev/kvm exists,
// the L1 CPU has svm, internal/vmm/kvm sees API 12 and real hardware
// virtualization there, and msb's native VMM boots the guest kernel with
// agentd in probe mode.
func TestNestedKVM(t *testing.T) {
	env := nested.Require(t)
	probe := e2etest.Build(t, "./test/e2e/testdata/kvmprobe")
	driver := e2etest.Build(t, "./test/e2e/testdata/nestedvmm")
	// A file given as bytes, read back by the script: the harness's own
	// plumbing is checked in the same boot.
	token := fmt.Sprintf("token-%d", time.Now().UnixNano())
	files := []nested.File{
		{Path: "/etc/nested/token", Data: []byte(token)},
		{Path: "/bin/kvmprobe", HostPath: probe, Mode: 0o755},
		{Path: "/bin/nestedvmm", HostPath: driver, Mode: 0o755},
	}
	// The guest kernel is needed only by the VMM check; without it the KVM
	// checks still run and the VMM subtest reports what is missing.
	guestKernel, kernelErr := guestkernel.Locate()
	script := `echo "check: token $(cat /etc/nested/token)"
echo "check: dev-kvm $([ -c /dev/kvm ] && echo yes || echo no)"
echo "check: svm-lines $(grep -c svm /proc/cpuinfo)"
nested-mark kvmprobe
/bin/kvmprobe
echo "check: kvmprobe-exit $?"
nested-mark kvmprobe-done
`
	if kernelErr == nil {
		agentd := e2etest.Build(t, "./cmd/agentd")
		files = append(files,
			nested.File{Path: "/guest/vmlinux", HostPath: guestKernel, Mode: 0o644},
			nested.File{Path: "/guest/initramfs.cpio", HostPath: e2etest.Initramfs(t, agentd, nil), Mode: 0o644})
		// tsc_early_khz: L2's TSC runs at L1's, which is the host's under TCG.
		script += fmt.Sprintf(`nested-mark vmm
/bin/nestedvmm -kernel /guest/vmlinux -initrd /guest/initramfs.cpio -vcpus 1 -mem 256 -timeout 60s tsc_early_khz=%d MSB_PROBE=1
echo "check: nestedvmm-exit $?"
nested-mark vmm-done
`, env.TSCKHz)
	}
	// A distinctive status shows that Result.ExitCode is the script's own.
	script += "exit 3\n"

	res := nested.Run(t, env, nested.Options{Files: files, Script: script})
	logTimings(t, res)
	if res.ExitCode != 3 {
		t.Fatalf("L1 script exit = %d; want 3 (its last command is `exit 3`)\nL1 console:\n%s", res.ExitCode, nested.Excerpt(res.Console))
	}
	check := func(t *testing.T, name string) string {
		t.Helper()
		l := res.Lines("check: " + name + " ")
		if len(l) != 1 {
			t.Fatalf("console has %d %q check lines; want 1\nL1 console:\n%s", len(l), name, nested.Excerpt(res.Console))
		}
		return strings.TrimPrefix(l[0], "check: "+name+" ")
	}

	t.Run("harness", func(t *testing.T) {
		if got := check(t, "token"); got != token {
			t.Errorf("file read back in L1 = %q; want %q", got, token)
		}
		for _, name := range []string{"init", "modules-loaded", "script-start", "kvmprobe", "kvmprobe-done"} {
			if _, ok := res.Mark(name); !ok {
				t.Errorf("no %q mark on the L1 console", name)
			}
		}
	})
	t.Run("dev-kvm", func(t *testing.T) {
		if got := check(t, "dev-kvm"); got != "yes" {
			t.Errorf("/dev/kvm is a character device: %s; want yes", got)
		}
	})
	t.Run("svm", func(t *testing.T) {
		n, err := strconv.Atoi(check(t, "svm-lines"))
		if err != nil || n < 1 {
			t.Errorf("grep -c svm /proc/cpuinfo = %d (%v); want >= 1", n, err)
		}
	})
	t.Run("kvmprobe", func(t *testing.T) {
		if got := check(t, "kvmprobe-exit"); got != "0" {
			t.Errorf("kvmprobe exit = %s; want 0\nL1 console:\n%s", got, nested.Excerpt(res.Console))
		}
		m := kvmprobeRE.FindStringSubmatch(res.Console)
		if m == nil {
			t.Fatalf("no kvmprobe line on the L1 console:\n%s", nested.Excerpt(res.Console))
		}
		if m[1] != "12" {
			t.Errorf("KVM API version = %s; want 12", m[1])
		}
		if m[2] != "true" {
			t.Errorf("machine.HardwareVirtualization() = %s; want true (line: %s)", m[2], m[0])
		}
		if m[3] != "" {
			t.Errorf("missing KVM capabilities: %s; want none", m[3])
		}
	})
	t.Run("vmm-boot", func(t *testing.T) {
		if kernelErr != nil {
			if e2etest.Required() {
				t.Fatalf("guest kernel: %v; MSB_REQUIRE_E2E=1 makes this a failure", kernelErr)
			}
			t.Skipf("guest kernel: %v", kernelErr)
		}
		l2 := vmmSection(res.Console)
		if got := check(t, "nestedvmm-exit"); got != "0" {
			t.Errorf("nestedvmm exit = %s; want 0", got)
		}
		m := nestedvmmRE.FindStringSubmatch(l2)
		if m == nil {
			t.Errorf("no nestedvmm summary line")
		} else if !strings.HasPrefix(m[1], "ok") {
			t.Errorf("native VMM run = %s; want ok", m[1])
		}
		p := probeRE.FindStringSubmatch(l2)
		if p == nil {
			t.Fatalf("no `msb-agentd: probe ok` marker from the guest on the native VMM; console from nestedvmm's start:\n%s", nested.Excerpt(l2))
		}
		if t.Failed() {
			t.Fatalf("console from nestedvmm's start:\n%s", nested.Excerpt(l2))
		}
		bootNs, _ := strconv.ParseInt(p[1], 10, 64)
		t.Logf("guest on the native VMM reached agentd after %v (guest clock); devices=%s; %s",
			time.Duration(bootNs), p[2], m[1])
	})
}

// vmmSection returns the console from the nested VMM's start on.
func vmmSection(console string) string {
	if i := strings.Index(console, "nested: mark vmm "); i >= 0 {
		return console[i:]
	}
	return console
}

// logTimings reports when L1 reached each mark (host clock from QEMU's
// start) and how long each step took.
func logTimings(t *testing.T, res nested.Result) {
	t.Helper()
	var b strings.Builder
	var prev time.Duration
	for _, m := range res.Marks {
		fmt.Fprintf(&b, "\n  %-16s at %6.2fs (+%5.2fs), L1 uptime %6.2fs", m.Name, m.At.Seconds(), (m.At - prev).Seconds(), m.Uptime.Seconds())
		prev = m.At
	}
	t.Logf("L1 run: QEMU exited after %.2fs, script exit %d; marks:%s", res.Elapsed.Seconds(), res.ExitCode, b.String())
}
