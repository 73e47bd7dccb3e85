package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/e2etest/nested"
	"github.com/msb-go/msb/internal/guestkernel"
)

// TestNestedMsbKVM runs the real msb CLI inside the nested-KVM harness, where
// --vmm auto must pick the native VMM: the sandbox process is the VMM. One L1 boot checks a create,
// uname and the vCPU count through the relay, a bind volume (virtio-fs in
// the native VMM) read and written from both sides, a 1 MiB file round trip
// in both directions, and `msb stop` (SIGTERM) ending the guest cleanly.
func TestNestedMsbKVM(t *testing.T) {
	env := nested.Require(t)
	kernel, err := guestkernel.Locate()
	if err != nil {
		t.Fatalf("guest kernel: %v", err)
	}
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	sum := sha256.Sum256(blob)
	want := hex.EncodeToString(sum[:])
	files := []nested.File{
		{Path: "/opt/msb/msb", HostPath: e2etest.Build(t, "./cmd/msb"), Mode: 0o755},
		{Path: "/opt/msb/agentd", HostPath: e2etest.Build(t, "./cmd/agentd"), Mode: 0o755},
		{Path: "/opt/msb/vmlinux", HostPath: kernel, Mode: 0o644},
		{Path: "/opt/msb/blob", Data: blob, Mode: 0o644},
	}
	// tsc_early_khz for L2 is not passed here: msb computes it from L1's
	// /proc/cpuinfo like anywhere else.
	script := `set -u
export MSB_HOME=/tmp/msbhome HOME=/root PATH=/opt/msb:$PATH
mkdir -p /root /rootfs/bin /rootfs/etc /rootfs/tmp /rootfs/root /rootfs/dev /rootfs/proc /rootfs/sys /rootfs/run
cp /bin/busybox /rootfs/bin/busybox
for a in sh uname cat sha256sum grep nproc sleep wget; do ln -s busybox /rootfs/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > /rootfs/etc/passwd
echo 'root:x:0:' > /rootfs/etc/group
mkdir -p /tmp/www && echo nested-net > /tmp/www/f
ip link set lo up 2>/dev/null; busybox httpd -p 127.0.0.1:8000 -h /tmp/www
mkdir -p /tmp/share && echo from-l1 > /tmp/share/in
nested-mark create
msb create --rootfs /rootfs --name n1 -c 2 -m 256 --net-rule allow@host -v /tmp/share:/data >/dev/null
echo "check: create $?"
nested-mark created
echo "check: confined $(grep -E '^(NoNewPrivs|Seccomp):' /proc/$(pidof msb)/status | tr -d ' \t\n')"
echo "check: net $(msb exec n1 -- sh -c 'wget -O /tmp/f http://host.msb.internal:8000/f >/dev/null 2>&1; cat /tmp/f')"
echo "check: uname $(msb exec n1 -- uname -sr)"
echo "check: cpus $(msb exec n1 -- grep -c ^processor /proc/cpuinfo)"
echo "check: vol-read $(msb exec n1 -- cat /data/in 2>&1)"
msb exec n1 -- sh -c 'echo from-l2 > /data/out'
echo "check: vol-write $(cat /tmp/share/out 2>&1)"
nested-mark exec-done
echo "check: vsock $(grep -c 'frame stream on vsock' $MSB_HOME/sandboxes/n1/logs/runtime.log)"
echo "check: in $(msb exec n1 -- sh -c 'cat > /tmp/b; sha256sum /tmp/b'  < /opt/msb/blob | cut -d' ' -f1)"
echo "check: out $(msb exec n1 -- cat /tmp/b | sha256sum | cut -d' ' -f1)"
nested-mark files-done
msb stop n1 >/dev/null
echo "check: stop $?"
nested-mark stopped
echo "check: ls $(msb ls --format json | tr -d '\n ')"
grep -E 'vm started|landlock|seccomp applied|network|vm exits|sandbox stopped|error' $MSB_HOME/sandboxes/n1/logs/runtime.log | sed 's/^/runtime.log: /'
`
	res := nested.Run(t, env, nested.Options{Files: files, Script: script, Timeout: 240e9})
	logTimings(t, res)
	check := func(name string) string {
		t.Helper()
		l := res.Lines("check: " + name + " ")
		if len(l) != 1 {
			t.Fatalf("console has %d %q check lines; want 1\nL1 console:\n%s", len(l), name, nested.Excerpt(res.Console))
		}
		return strings.TrimPrefix(l[0], "check: "+name+" ")
	}
	if got := check("create"); got != "0" {
		t.Fatalf("msb create exit %s; want 0\nL1 console:\n%s", got, nested.Excerpt(res.Console))
	}
	if got := check("uname"); !strings.HasPrefix(got, "Linux 6.1") {
		t.Errorf("uname in the guest = %q; want Linux 6.1…", got)
	}
	if got := check("cpus"); got != "2" {
		t.Errorf("guest sees %s CPUs; want 2", got)
	}
	if got := check("vol-read"); got != "from-l1" {
		t.Errorf("guest read of the L1 host's file on the -v volume = %q; want from-l1\nL1 console:\n%s", got, nested.Excerpt(res.Console))
	}
	if got := check("vol-write"); got != "from-l2" {
		t.Errorf("L1 host read of the file the guest wrote on the -v volume = %q; want from-l2", got)
	}
	if got := check("vsock"); got != "1" {
		t.Errorf("runtime.log has %s lines saying the agent's frame stream moved to vsock; want 1 (the native VMM's virtio-vsock device)", got)
	}
	if got := check("in"); got != want {
		t.Errorf("sha256 of the 1 MiB file in the guest = %q; want %s\nL1 console:\n%s", got, want, nested.Excerpt(res.Console))
	}
	if got := check("out"); got != want {
		t.Errorf("sha256 of the file read back = %q; want %s", got, want)
	}
	if got := check("stop"); got != "0" {
		t.Errorf("msb stop exit %s; want 0", got)
	}
	var list []struct{ Name, Status, Reason string }
	if err := json.Unmarshal([]byte(check("ls")), &list); err != nil || len(list) != 1 {
		t.Fatalf("msb ls = %q (%v)", check("ls"), err)
	}
	if got := fmt.Sprintf("%s/%s", list[0].Status, list[0].Reason); got != "Stopped/Completed" {
		t.Errorf("after msb stop: %s; want Stopped/Completed (a clean guest shutdown)", got)
	}
	for _, want := range []string{"landlock applied", "seccomp applied"} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("the sandbox process did not report %q (full hardening is seccomp + landlock):\n%s", want, nested.Excerpt(res.Console))
		}
	}
	if got := check("confined"); got != "NoNewPrivs:1Seccomp:2" {
		t.Errorf("sandbox process status = %q; want NoNewPrivs:1Seccomp:2", got)
	}
	if got := check("net"); got != "nested-net" {
		t.Errorf("guest fetch from the L1 host through host.msb.internal = %q; want nested-net (the network on the native VMM)", got)
	}
	if !strings.Contains(res.Console, "backend=kvm") {
		t.Errorf("--vmm auto did not pick the native VMM on real (nested) KVM:\n%s", nested.Excerpt(res.Console))
	}
}
