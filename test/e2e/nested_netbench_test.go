package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/e2etest/nested"
	"github.com/msb-go/msb/internal/guestkernel"
	"github.com/msb-go/msb/internal/supervisor"
)

// netsinkRE matches netsink's per-connection result lines
// (test/e2e/testdata/netsink).
var netsinkRE = regexp.MustCompile(`(?m)^netsink: result conn=(\d+) bytes=(\d+) ms=(\d+\.\d+) bad=(\d+)\r?$`)

// l2sinkRE matches the same lines of a netsink run inside the L2 guest,
// renamed by the script so they cannot be taken for L1's.
var l2sinkRE = regexp.MustCompile(`(?m)^l2sink: result conn=(\d+) bytes=(\d+) ms=(\d+\.\d+) bad=(\d+)\r?$`)

// netRun is one connection netsink served.
type netRun struct {
	Bytes   int64
	Elapsed time.Duration
	Bad     int64 // reads that differed from the pattern
}

// parseNetsink returns the result lines in connection order, and an error
// for a malformed or out-of-order line.
func parseNetsink(console string) ([]netRun, error) {
	return parseSink(netsinkRE, console, true)
}

// parseSink returns the runs re matches in console; ordered requires the
// connection numbers 1, 2, 3… (one server), otherwise each line is conn 1
// (one server per run).
func parseSink(re *regexp.Regexp, console string, ordered bool) ([]netRun, error) {
	var out []netRun
	for _, m := range re.FindAllStringSubmatch(console, -1) {
		conn, err := strconv.Atoi(m[1])
		want := len(out) + 1
		if !ordered {
			want = 1
		}
		if err != nil || conn != want {
			return nil, fmt.Errorf("result line %q: conn %s; want %d", m[0], m[1], want)
		}
		n, err1 := strconv.ParseInt(m[2], 10, 64)
		ms, err2 := strconv.ParseFloat(m[3], 64)
		bad, err3 := strconv.ParseInt(m[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || ms <= 0 || ms > 1e7 {
			return nil, fmt.Errorf("result line %q: bad number", m[0])
		}
		out = append(out, netRun{Bytes: n, Elapsed: time.Duration(ms * float64(time.Millisecond)), Bad: bad})
	}
	return out, nil
}

// BenchmarkNestedNetGuestToHost measures guest→host TCP throughput on the
// native VMM: inside one L1 (the nested harness), an L2 sandbox created with
// `--vmm kvm` sends MiB pattern bytes through host.msb.internal and the
// sandbox's user-mode stack to netsink on L1's loopback, alternating with
// L1 sending the same bytes to the same server over its own loopback. The
// server times and checks both kinds of connection alike; the ratio of the
// medians is the stack's share of loopback speed. b.N rounds in one L1 boot:
// run with `-bench NestedNet -benchtime 3x`. MSB_NETBENCH_MIB overrides the
// size (default 64).
func BenchmarkNestedNetGuestToHost(b *testing.B) {
	env := nested.Require(b)
	kernel, err := guestkernel.Locate()
	if err != nil {
		b.Fatalf("guest kernel: %v", err)
	}
	mib := 64
	if s := os.Getenv("MSB_NETBENCH_MIB"); s != "" {
		if mib, err = strconv.Atoi(s); err != nil || mib <= 0 {
			b.Fatalf("MSB_NETBENCH_MIB=%q", s)
		}
	}
	size := int64(mib) << 20
	sink := e2etest.Build(b, "./test/e2e/testdata/netsink")
	files := []nested.File{
		{Path: "/opt/msb/msb", HostPath: e2etest.Build(b, "./cmd/msb"), Mode: 0o755},
		{Path: "/opt/msb/agentd", HostPath: e2etest.Build(b, "./cmd/agentd"), Mode: 0o755},
		{Path: "/opt/msb/vmlinux", HostPath: kernel, Mode: 0o644},
		{Path: "/opt/msb/netsink", HostPath: sink, Mode: 0o755},
	}
	rounds := b.N
	// MSB_NETBENCH_PROFILE=FILE: the sandbox process's CPU profile
	// (supervisor.CPUProfileEnv), carried out over L1's console.
	profOut := os.Getenv("MSB_NETBENCH_PROFILE")
	profEnv := ""
	if profOut != "" {
		profEnv = supervisor.CPUProfileEnv + "=1 "
	}
	script := fmt.Sprintf(`set -u
export MSB_HOME=/tmp/msbhome HOME=/root PATH=/opt/msb:$PATH
mkdir -p /root /rootfs/bin /rootfs/etc /rootfs/tmp /rootfs/root /rootfs/dev /rootfs/proc /rootfs/sys /rootfs/run
cp /bin/busybox /rootfs/bin/busybox
ln -s busybox /rootfs/bin/sh
cp /opt/msb/netsink /rootfs/bin/netsink
echo 'root:x:0:0:root:/root:/bin/sh' > /rootfs/etc/passwd
echo 'root:x:0:' > /rootfs/etc/group
ip link set lo up 2>/dev/null
netsink serve -n %[1]d 127.0.0.1:9000 &
%[4]smsb create --rootfs /rootfs --name n1 --vmm kvm -c 2 -m 256 --net-rule allow@host >/dev/null
echo "netbench: create $?"
nested-mark created
i=0
while [ $i -lt %[2]d ]; do
  i=$((i+1))
  netsink send 127.0.0.1:9000 %[3]d || echo "netbench: loopback send failed"
  sb=$(pidof msb)
  set -- $(head -1 /proc/stat); c0="$2 $4 $5 $6 $7 $8"
  p0=$(cut -d' ' -f14,15,43 /proc/$sb/stat)
  mount -t debugfs none /sys/kernel/debug 2>/dev/null
  for f in exits halt_exits halt_successful_poll halt_attempted_poll irq_injections irq_exits io_exits mmio_exits nmi_injections signal_exits irq_window_exits request_irq_exits; do [ -r /sys/kernel/debug/kvm/$f ] && echo "$f $(cat /sys/kernel/debug/kvm/$f)"; done > /tmp/k0
  msb exec n1 -- netsink send host.msb.internal:9000 %[3]d || echo "netbench: guest send failed"
  set -- $(head -1 /proc/stat); c1="$2 $4 $5 $6 $7 $8"
  p1=$(cut -d' ' -f14,15,43 /proc/$sb/stat)
  for f in exits halt_exits halt_successful_poll halt_attempted_poll irq_injections irq_exits io_exits mmio_exits nmi_injections signal_exits irq_window_exits request_irq_exits; do [ -r /sys/kernel/debug/kvm/$f ] && echo "$f $(cat /sys/kernel/debug/kvm/$f)"; done > /tmp/k1
  paste /tmp/k0 /tmp/k1 | sed 's/^/netbench: kvm /'
  msb exec n1 -- busybox grep -A1 '^Tcp:' /proc/net/snmp | busybox sed 's/^/netbench: snmp /'
  msb exec n1 -- busybox grep -A1 '^TcpExt:' /proc/net/netstat | busybox sed 's/^/netbench: snmp /'
  echo "netbench: cpu l1-before=[$c0] l1-after=[$c1] sandbox-before=[$p0] sandbox-after=[$p1]"
  msb exec n1 -- sh -c 'netsink serve -n 1 127.0.0.1:9001 >/tmp/l2.out 2>&1 & until busybox grep -q listening /tmp/l2.out; do busybox sleep 0.1; done; netsink send 127.0.0.1:9001 %[3]d; wait; busybox sed -n "s/^netsink: result/l2sink: result/p" /tmp/l2.out' || echo "netbench: l2 loopback failed"
done
wait
nested-mark sent
msb stop n1 >/dev/null
grep -E 'network|error|vm exits|virtio-net' $MSB_HOME/sandboxes/n1/logs/runtime.log | sed 's/^/runtime.log: /'
[ -s $MSB_HOME/sandboxes/n1/logs/cpu.pprof ] && base64 $MSB_HOME/sandboxes/n1/logs/cpu.pprof | sed 's/^/pprof: /'
`, 2*rounds, rounds, size, profEnv)
	// Generous: L2 on nested KVM under TCG may move only a few MB/s.
	timeout := nested.DefaultTimeout + time.Duration(rounds)*time.Duration(mib)*time.Second
	res := nested.Run(b, env, nested.Options{Files: files, Script: script, Timeout: timeout})
	if got := res.Lines("netbench: create "); len(got) != 1 || got[0] != "netbench: create 0" {
		b.Fatalf("msb create lines = %q; want [\"netbench: create 0\"]\nL1 console:\n%s", got, nested.Excerpt(res.Console))
	}
	runs, err := parseNetsink(res.Console)
	if err != nil {
		b.Fatalf("%v\nL1 console:\n%s", err, nested.Excerpt(res.Console))
	}
	if len(runs) != 2*rounds {
		b.Fatalf("netsink result lines = %d; want %d\nL1 console:\n%s", len(runs), 2*rounds, nested.Excerpt(res.Console))
	}
	var loop, guest []time.Duration
	for i, r := range runs {
		if r.Bytes != size || r.Bad != 0 {
			b.Fatalf("connection %d: %d bytes, %d bad reads; want %d bytes, none bad\nL1 console:\n%s", i+1, r.Bytes, r.Bad, size, nested.Excerpt(res.Console))
		}
		if i%2 == 0 {
			loop = append(loop, r.Elapsed)
		} else {
			guest = append(guest, r.Elapsed)
		}
	}
	// L2's own loopback is the ceiling that nested emulation puts on
	// anything the guest does; on real hardware it is close to L1's.
	l2runs, err := parseSink(l2sinkRE, res.Console, false)
	if err != nil || len(l2runs) != rounds {
		b.Fatalf("L2 loopback results %d (%v); want %d\nL1 console:\n%s", len(l2runs), err, rounds, nested.Excerpt(res.Console))
	}
	var l2loop []time.Duration
	for i, r := range l2runs {
		if r.Bytes != size || r.Bad != 0 {
			b.Fatalf("L2 loopback %d: %d bytes, %d bad reads; want %d bytes, none bad", i+1, r.Bytes, r.Bad, size)
		}
		l2loop = append(l2loop, r.Elapsed)
	}
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	lm, gm, l2m := mbps(medianDuration(loop)), mbps(medianDuration(guest)), mbps(medianDuration(l2loop))
	b.ReportMetric(gm, "guest-MB/s")
	b.ReportMetric(lm, "l1-loopback-MB/s")
	b.ReportMetric(gm/lm, "ratio")
	b.ReportMetric(l2m, "l2-loopback-MB/s")
	b.ReportMetric(gm/l2m, "ratio-l2")
	if profOut != "" {
		var enc strings.Builder
		for _, l := range res.Lines("pprof: ") {
			enc.WriteString(strings.TrimPrefix(l, "pprof: "))
		}
		prof, err := base64.StdEncoding.DecodeString(enc.String())
		if err != nil || len(prof) == 0 {
			b.Fatalf("CPU profile from L1: %d bytes (%v)", len(prof), err)
		}
		if err := os.WriteFile(profOut, prof, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("sandbox process CPU profile: %s (go tool pprof -top %s)", profOut, profOut)
	}
	for _, l := range slices.Concat(res.Lines("netbench: cpu"), res.Lines("netbench: kvm"), res.Lines("runtime.log: ")) {
		b.Log(l) // exit counts: the cost of a frame under nested SVM
	}
	b.Logf("L1 run: QEMU exited after %.2fs; %d MiB per connection; loopback %v; guest %v; L2 loopback %v", res.Elapsed.Seconds(), mib, loop, guest, l2loop)
}

func medianDuration(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func TestParseNetsink(t *testing.T) {
	line := func(conn int, bytes, ms string, bad int) string {
		return fmt.Sprintf("netsink: result conn=%d bytes=%s ms=%s bad=%d\r\n", conn, bytes, ms, bad)
	}
	tests := []struct {
		name    string
		console string
		want    []netRun
		wantErr bool
	}{
		{name: "empty", console: ""},
		{
			name:    "two among noise",
			console: "[ 1.0] booting\r\n" + line(1, "1024", "2.500", 0) + "netsink: error conn=2 err=\"x\"\r\n" + line(2, "2048", "1000.000", 1),
			want: []netRun{
				{Bytes: 1024, Elapsed: 2500 * time.Microsecond},
				{Bytes: 2048, Elapsed: time.Second, Bad: 1},
			},
		},
		{name: "out of order", console: line(2, "1", "1.000", 0), wantErr: true},
		{name: "zero time", console: line(1, "1", "0.000", 0), wantErr: true},
		{name: "absurd time", console: line(1, "1", "99999999999.000", 0), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNetsink(tt.console)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseNetsink error = %v; want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(got, tt.want) {
				t.Errorf("parseNetsink = %+v; want %+v", got, tt.want)
			}
		})
	}
}
