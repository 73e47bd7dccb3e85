package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
)

var probeRE = regexp.MustCompile(`msb-agentd: probe ok boot_ns=(\d+) devices=(\S*)`)

// TestBootProbe boots the guest kernel with agentd in probe mode: agentd
// prints a marker with its boot time and the virtio devices it sees, then
// shuts the VM down. It pins the whole harness: kernel, initramfs, QEMU
// arguments, console capture and a clean exit.
func TestBootProbe(t *testing.T) {
	env := e2etest.Require(t)
	agentd := e2etest.Build(t, "./cmd/agentd")
	initrd := e2etest.Initramfs(t, agentd, nil)
	g := e2etest.Start(t, env, e2etest.Boot{Initrd: initrd, Cmdline: []string{"MSB_PROBE=1"}})
	exit := g.Wait(t)
	elapsed := time.Since(g.Started)
	console := g.ConsoleText(t)
	if exit.Err != nil || exit.Panicked {
		t.Fatalf("guest exit = %+v; want clean\nconsole:\n%s", exit, console)
	}
	m := probeRE.FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("no probe marker on the console:\n%s", console)
	}
	bootNs, _ := strconv.ParseUint(m[1], 10, 64)
	if bootNs == 0 || time.Duration(bootNs) > elapsed {
		t.Errorf("boot_ns = %d; want within (0, %v]", bootNs, elapsed)
	}
	// QEMU's microvm here has the virtio-rng device only (no agent port).
	if got, want := m[2], "rng"; got != want {
		t.Errorf("devices = %q; want %q", got, want)
	}
	t.Logf("guest reached agentd after %v; QEMU exited after %v", time.Duration(bootNs), elapsed)
}
