package e2e

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/e2etest/nested"
	"github.com/msb-go/msb/internal/guestkernel"
)

// nestedRSSRE matches the script's measurement lines: VmRSS of a process
// and the resident part of its guest RAM mapping, in KiB.
var nestedRSSRE = regexp.MustCompile(`(?m)^rss: ([\w-]+) total=(\d+) guest=(\d+)\r?$`)

// parseNestedRSS returns the measurements by label, in KiB.
func parseNestedRSS(console string) (map[string][2]int64, error) {
	out := map[string][2]int64{}
	for _, m := range nestedRSSRE.FindAllStringSubmatch(console, -1) {
		total, err1 := strconv.ParseInt(m[2], 10, 64)
		guest, err2 := strconv.ParseInt(m[3], 10, 64)
		if err1 != nil || err2 != nil || guest > total || total == 0 {
			return nil, fmt.Errorf("rss line %q: want guest <= total, total > 0", m[0])
		}
		if _, dup := out[m[1]]; dup {
			return nil, fmt.Errorf("rss line %q: %s measured twice", m[0], m[1])
		}
		out[m[1]] = [2]int64{total, guest}
	}
	return out, nil
}

// rssScript measures, in L1 with real KVM, an idle sandbox on the native
// VMM (the sandbox process is the VMM: its RSS less its resident guest RAM
// is msb's whole overhead) and one on the QEMU backend with -accel kvm
// (the sandbox process, and QEMU less its guest RAM), one after the other.
const rssScript = `set -u
export MSB_HOME=/tmp/msbhome HOME=/root PATH=/opt/msb:$PATH
mkdir -p /root /rootfs/bin /rootfs/etc /rootfs/tmp /rootfs/root /rootfs/dev /rootfs/proc /rootfs/sys /rootfs/run
cp /bin/busybox /rootfs/bin/busybox
for a in sh true; do ln -s busybox /rootfs/bin/$a; done
echo 'root:x:0:0:root:/root:/bin/sh' > /rootfs/etc/passwd
echo 'root:x:0:' > /rootfs/etc/group
# rss LABEL PID: VmRSS and the Rss of the largest mapping of exactly the
# guest's RAM size (%d MiB) in /proc/PID/smaps.
rss() {
	total=$(awk '/^VmRSS:/ {print $2}' /proc/$2/status)
	guest=$(awk -v want=%d '/^Size:/ {in_ram = ($2 == want)} /^Rss:/ {if (in_ram && $2 > max) max = $2} END {print max + 0}' /proc/$2/smaps)
	echo "rss: $1 total=$total guest=$guest"
}
for vmm in kvm qemu; do
	msb create --rootfs /rootfs --name r-$vmm --vmm $vmm -m %d >/dev/null || echo "rss-error: create $vmm $?"
	msb exec r-$vmm -- true || echo "rss-error: exec $vmm $?"
	sleep 2
	if [ $vmm = qemu ]; then
		# The sandbox process maps guest RAM too (its vhost-user back-ends):
		# guest= is the resident part of its mappings of QEMU's RAM file.
		q=$(pidof qemu-system-x86_64)
		file=$(awk -v want=%d '/^[0-9a-f]+-[0-9a-f]+ / {f = $4 " " $5} /^Size:/ {if ($2 == want) {print f; exit}}' /proc/$q/smaps)
		total=$(awk '/^VmRSS:/ {print $2}' /proc/$(pidof msb)/status)
		shared=$(awk -v f="$file" '/^[0-9a-f]+-[0-9a-f]+ / {in_ram = ($4 " " $5 == f)} /^Rss:/ {if (in_ram) s += $2} END {print s + 0}' /proc/$(pidof msb)/smaps)
		echo "rss: sandbox-qemu total=$total guest=$shared"
		rss qemu $q
	else
		rss sandbox-$vmm $(pidof msb)
	fi
	msb rm -f r-$vmm >/dev/null
done
nested-mark rss-done
`

// BenchmarkCompareRSSNative measures what an idle sandbox costs the host on
// the native VMM, inside the nested-KVM harness: the sandbox process's RSS
// beyond the guest RAM it holds, next to QEMU's RSS beyond guest RAM in a
// sandbox on the QEMU backend (-accel kvm) in the same L1. One L1 boot per
// round.
func BenchmarkCompareRSSNative(b *testing.B) {
	env := nested.Require(b)
	kernel, err := guestkernel.Locate()
	if err != nil {
		b.Fatalf("guest kernel: %v", err)
	}
	qemuFiles, qemuBin := nestedQEMU(b, env)
	const mem = 256
	files := append([]nested.File{
		{Path: "/opt/msb/msb", HostPath: e2etest.Build(b, "./cmd/msb"), Mode: 0o755},
		{Path: "/opt/msb/agentd", HostPath: e2etest.Build(b, "./cmd/agentd"), Mode: 0o755},
		{Path: "/opt/msb/vmlinux", HostPath: kernel, Mode: 0o644},
	}, qemuFiles...)
	script := "export PATH=" + filepath.Dir(qemuBin) + ":$PATH\n" + fmt.Sprintf(rssScript, mem, mem<<10, mem, mem<<10)
	var native, sbQEMU, qemuOver, nativeGuest []float64
	for b.Loop() {
		res := nested.Run(b, env, nested.Options{Files: files, Script: script, Timeout: 300e9})
		if errs := res.Lines("rss-error: "); len(errs) > 0 {
			b.Fatalf("%q\nL1 console:\n%s", errs, nested.Excerpt(res.Console))
		}
		m, err := parseNestedRSS(res.Console)
		if err != nil || len(m) != 3 {
			b.Fatalf("rss lines: %v, %d of 3\nL1 console:\n%s", err, len(m), nested.Excerpt(res.Console))
		}
		native = append(native, float64(m["sandbox-kvm"][0]-m["sandbox-kvm"][1])/1024)
		nativeGuest = append(nativeGuest, float64(m["sandbox-kvm"][1])/1024)
		sbQEMU = append(sbQEMU, float64(m["sandbox-qemu"][0]-m["sandbox-qemu"][1])/1024)
		qemuOver = append(qemuOver, float64(m["qemu"][0]-m["qemu"][1])/1024)
		b.Logf("L1 run %.1fs: native sandbox process %d KiB (guest RAM %d KiB resident); QEMU backend: sandbox process %d KiB (guest RAM %d KiB), QEMU %d KiB (guest RAM %d KiB)",
			res.Elapsed.Seconds(), m["sandbox-kvm"][0], m["sandbox-kvm"][1], m["sandbox-qemu"][0], m["sandbox-qemu"][1], m["qemu"][0], m["qemu"][1])
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	b.ReportMetric(med(native), "msb-MiB")
	b.ReportMetric(med(qemuOver), "peer-MiB")
	b.ReportMetric(med(sbQEMU), "qemu-sandbox-MiB")
	b.ReportMetric(med(nativeGuest), "msb-guest-MiB")
}

func TestParseNestedRSS(t *testing.T) {
	tests := []struct {
		name    string
		console string
		want    map[string][2]int64
		wantErr bool
	}{
		{name: "none", want: map[string][2]int64{}},
		{name: "three among noise", console: "x\r\nrss: sandbox-kvm total=300000 guest=280000\r\n[ 1.0] y\nrss: qemu total=5 guest=0\n",
			want: map[string][2]int64{"sandbox-kvm": {300000, 280000}, "qemu": {5, 0}}},
		{name: "guest above total", console: "rss: qemu total=5 guest=6\n", wantErr: true},
		{name: "empty total", console: "rss: qemu total=0 guest=0\n", wantErr: true},
		{name: "twice", console: "rss: qemu total=5 guest=1\nrss: qemu total=5 guest=1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNestedRSS(tt.console)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v; want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !maps.Equal(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}
