package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/e2etest/nested"
)

// nestedBenchRE matches the driver's per-boot result lines
// (test/e2e/testdata/nestedbench).
var nestedBenchRE = regexp.MustCompile(`(?m)^nestedbench: result backend=(native|qemu) boot=(\d+) first_byte_ms=(\d+\.\d+) ready_ms=(\d+\.\d+) exit_ms=(\d+\.\d+) console_bytes=(\d+)\r?$`)

// Backends the driver compares.
const (
	benchNative = "native"
	benchQEMU   = "qemu"
)

// bootTiming is one guest boot, measured in L1 from the VMM process's start.
type bootTiming struct {
	FirstByte time.Duration // first serial console byte
	Ready     time.Duration // agentd's core.ready frame on the agent port
	Exit      time.Duration // the VMM process's exit after core.shutdown
	// ConsoleBytes is how much the guest printed by core.ready.
	ConsoleBytes int64
}

// parseNestedBench returns the timings per backend in boot order, and an
// error for a malformed or out-of-order result line.
func parseNestedBench(console string) (map[string][]bootTiming, error) {
	out := map[string][]bootTiming{}
	for _, m := range nestedBenchRE.FindAllStringSubmatch(console, -1) {
		boot, err := strconv.Atoi(m[2])
		if err != nil || boot != len(out[m[1]])+1 {
			return nil, fmt.Errorf("result line %q: boot %s; want %d", m[0], m[2], len(out[m[1]])+1)
		}
		var d [3]time.Duration
		for i, s := range m[3:6] {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f > 1e7 {
				return nil, fmt.Errorf("result line %q: bad time %q", m[0], s)
			}
			d[i] = time.Duration(f * float64(time.Millisecond))
		}
		if d[0] > d[1] || d[1] > d[2] {
			return nil, fmt.Errorf("result line %q: want first byte <= ready <= exit", m[0])
		}
		cb, err := strconv.ParseInt(m[6], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("result line %q: bad console_bytes", m[0])
		}
		out[m[1]] = append(out[m[1]], bootTiming{FirstByte: d[0], Ready: d[1], Exit: d[2], ConsoleBytes: cb})
	}
	return out, nil
}

// medianOf returns the median of field over ts (the lower middle for an
// even count).
func medianOf(ts []bootTiming, field func(bootTiming) time.Duration) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	v := make([]time.Duration, len(ts))
	for i, t := range ts {
		v[i] = field(t)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[(len(v)-1)/2]
}

// qemuDataFiles are the files QEMU 7.2 opens besides its libraries for
// `-M microvm -nodefaults -no-user-config -kernel` (seen with `strace -f -e
// trace=openat`): the qboot firmware and, for a PVH kernel, the pvh.bin
// option ROM, both from <prefix>/share/qemu next to <prefix>/bin.
var qemuDataFiles = []string{"qboot.rom", "pvh.bin"}

// nestedQEMU returns the host's QEMU, its libraries and data files packed
// for L1 (at their host paths), and the path of the binary.
func nestedQEMU(tb testing.TB, env nested.Env) ([]nested.File, string) {
	tb.Helper()
	qemuBin, err := filepath.EvalSymlinks(env.QEMU)
	if err != nil {
		tb.Fatalf("qemu: %v", err)
	}
	qemuBin, err = filepath.Abs(qemuBin)
	if err != nil {
		tb.Fatalf("qemu: %v", err)
	}
	var data []string
	for _, name := range qemuDataFiles {
		p := filepath.Join(filepath.Dir(filepath.Dir(qemuBin)), "share", "qemu", name)
		if _, err := os.Stat(p); err == nil {
			data = append(data, p)
		}
	}
	files, err := nested.HostBinary(qemuBin, data...)
	if err != nil {
		tb.Fatalf("pack QEMU for L1: %v", err)
	}
	return files, qemuBin
}

// nestedBench boots one L1 in which the driver boots msb's guest kernel with
// agentd n times on the native VMM and n times under QEMU microvm with KVM,
// and returns the parsed timings and the L1 run.
func nestedBench(tb testing.TB, n int) (map[string][]bootTiming, nested.Result) {
	tb.Helper()
	env := nested.Require(tb)
	guestEnv := e2etest.Require(tb) // the guest kernel
	driver := e2etest.Build(tb, "./test/e2e/testdata/nestedbench")
	agentd := e2etest.Build(tb, "./cmd/agentd")
	qemuFiles, qemuBin := nestedQEMU(tb, env)
	files := append([]nested.File{
		{Path: "/bin/nestedbench", HostPath: driver, Mode: 0o755},
		{Path: "/guest/vmlinux", HostPath: guestEnv.Kernel, Mode: 0o644},
		{Path: "/guest/initramfs.cpio", HostPath: e2etest.Initramfs(tb, agentd, nil), Mode: 0o644},
	}, qemuFiles...)
	const perBoot = 30 * time.Second
	// msb's `quiet` guest prints nothing before core.ready, so there
	// would be no first byte to time. loglevel=6 (after quiet, so it wins)
	// lets the kernel's notice-level lines through, starting with the
	// "Linux version" banner: ~450 bytes, which cost both backends the same
	// ~450 serial port exits (~40 ms here). MSB_NESTEDBENCH_CMDLINE adds
	// kernel parameters to both backends for experiments.
	cmdline := strings.TrimSpace("loglevel=6 " + os.Getenv("MSB_NESTEDBENCH_CMDLINE"))
	// tsc_early_khz: L2's TSC runs at L1's, which is the host's under TCG.
	script := fmt.Sprintf(`nested-mark bench
/bin/nestedbench -n %d -qemu %s -kernel /guest/vmlinux -initrd /guest/initramfs.cpio -mem 256 -tsc-khz %d -timeout %s %s
echo "nestedbench: exit $?"
nested-mark bench-done
`, n, qemuBin, env.TSCKHz, perBoot, cmdline)
	res := nested.Run(tb, env, nested.Options{
		Files:   files,
		Script:  script,
		Timeout: nested.DefaultTimeout + time.Duration(2*n)*perBoot,
	})
	if got := res.Lines("nestedbench: exit "); len(got) != 1 || got[0] != "nestedbench: exit 0" {
		tb.Fatalf("nestedbench exit lines = %q; want [\"nestedbench: exit 0\"]\nL1 console:\n%s", got, nested.Excerpt(res.Console))
	}
	timings, err := parseNestedBench(res.Console)
	if err != nil {
		tb.Fatalf("%v\nL1 console:\n%s", err, nested.Excerpt(res.Console))
	}
	for _, b := range []string{benchNative, benchQEMU} {
		if got := len(timings[b]); got != n {
			tb.Fatalf("%s result lines = %d; want %d\nL1 console:\n%s", b, got, n, nested.Excerpt(res.Console))
		}
	}
	var detail []string
	for _, b := range []string{benchNative, benchQEMU} {
		detail = append(detail, res.Lines("nestedbench: console["+b+"]| ")...)
		detail = append(detail, res.Lines("nestedbench: stderr["+b+"]| ")...)
	}
	tb.Logf("first boot of each backend, guest console and VMM stderr:\n  %s", strings.Join(detail, "\n  "))
	return timings, res
}

// benchTable formats the per-boot timings and the medians.
func benchTable(timings map[string][]bootTiming) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n  %-7s %5s %14s %10s %10s %14s", "backend", "boot", "first-byte-ms", "ready-ms", "exit-ms", "console-bytes")
	for _, name := range []string{benchNative, benchQEMU} {
		for i, t := range timings[name] {
			fmt.Fprintf(&b, "\n  %-7s %5d %14.1f %10.1f %10.1f %14d", name, i+1, msF(t.FirstByte), msF(t.Ready), msF(t.Exit), t.ConsoleBytes)
		}
		ts := timings[name]
		fmt.Fprintf(&b, "\n  %-7s %5s %14.1f %10.1f %10.1f", name, "med",
			msF(medianOf(ts, func(t bootTiming) time.Duration { return t.FirstByte })),
			msF(medianOf(ts, func(t bootTiming) time.Duration { return t.Ready })),
			msF(medianOf(ts, func(t bootTiming) time.Duration { return t.Exit })))
	}
	nr, qr := readyMedians(timings)
	if nr > 0 {
		fmt.Fprintf(&b, "\n  ready ratio qemu/native = %.2f", float64(qr)/float64(nr))
	}
	return b.String()
}

func readyMedians(timings map[string][]bootTiming) (native, qemu time.Duration) {
	ready := func(t bootTiming) time.Duration { return t.Ready }
	return medianOf(timings[benchNative], ready), medianOf(timings[benchQEMU], ready)
}

func msF(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TestNestedBootCompare boots the guest once on each backend inside one L1
// (the CI form of BenchmarkNestedBoot): both must reach core.ready and stop
// on core.shutdown, and the driver's timings must be well-formed.
func TestNestedBootCompare(t *testing.T) {
	timings, res := nestedBench(t, 1)
	logTimings(t, res)
	t.Logf("nested boot timings (ms from VMM process start):%s", benchTable(timings))
	for _, b := range []string{benchNative, benchQEMU} {
		if got := timings[b][0].Ready; got <= 0 {
			t.Errorf("%s ready = %v; want > 0", b, got)
		}
	}
}

// BenchmarkNestedBoot compares msb's native VMM with QEMU microvm (KVM)
// inside the nested harness: one L1 boot per run, b.N guest boots on each
// backend, medians of the time from VMM process start to the first console
// byte and to core.ready, and the ready-time ratio QEMU/native (> 1: the
// native VMM is faster). Run with `-bench NestedBoot -benchtime 3x`.
func BenchmarkNestedBoot(b *testing.B) {
	timings, res := nestedBench(b, b.N)
	b.Logf("L1 run: QEMU exited after %.2fs", res.Elapsed.Seconds())
	first := func(t bootTiming) time.Duration { return t.FirstByte }
	ready := func(t bootTiming) time.Duration { return t.Ready }
	b.ReportMetric(msF(medianOf(timings[benchNative], first)), "native-first-byte-ms")
	b.ReportMetric(msF(medianOf(timings[benchNative], ready)), "native-ready-ms")
	b.ReportMetric(msF(medianOf(timings[benchQEMU], first)), "qemu-first-byte-ms")
	b.ReportMetric(msF(medianOf(timings[benchQEMU], ready)), "qemu-ready-ms")
	if nr, qr := readyMedians(timings); nr > 0 {
		b.ReportMetric(float64(qr)/float64(nr), "ratio-ready")
	}
	b.Logf("nested boot timings, N=%d (ms from VMM process start):%s", b.N, benchTable(timings))
}

func TestParseNestedBench(t *testing.T) {
	line := func(backend string, boot int, f, r, e string) string {
		return fmt.Sprintf("nestedbench: result backend=%s boot=%d first_byte_ms=%s ready_ms=%s exit_ms=%s console_bytes=445\r\n", backend, boot, f, r, e)
	}
	tests := []struct {
		name    string
		console string
		want    map[string][]bootTiming
		wantErr bool
	}{
		{name: "empty", console: "", want: map[string][]bootTiming{}},
		{
			name: "both backends among noise",
			console: "[ 1.0] kvm: Nested Virtualization enabled\r\n" +
				line("native", 1, "12.500", "250.000", "300.250") +
				"nestedbench: error backend=qemu boot=1 err=\"x\"\r\n" +
				line("qemu", 1, "100.000", "900.000", "1000.000") +
				"echo nestedbench: result backend=native boot=2 first_byte_ms=1.000 ready_ms=2.000 exit_ms=3.000 console_bytes=1\n",
			want: map[string][]bootTiming{
				"native": {{FirstByte: 12500 * time.Microsecond, Ready: 250 * time.Millisecond, Exit: 300250 * time.Microsecond, ConsoleBytes: 445}},
				"qemu":   {{FirstByte: 100 * time.Millisecond, Ready: 900 * time.Millisecond, Exit: time.Second, ConsoleBytes: 445}},
			},
		},
		{name: "boot out of order", console: line("native", 2, "1.000", "2.000", "3.000"), wantErr: true},
		{name: "ready before first byte", console: line("qemu", 1, "5.000", "2.000", "9.000"), wantErr: true},
		{name: "absurd time", console: line("qemu", 1, "1.000", "2.000", "99999999999.000"), wantErr: true},
		{name: "unknown backend ignored", console: line("xen", 1, "1.000", "2.000", "3.000"), want: map[string][]bootTiming{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNestedBench(tt.console)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseNestedBench error = %v; want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); !tt.wantErr && diff != "" {
				t.Errorf("parseNestedBench (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMedianOf(t *testing.T) {
	ready := func(b bootTiming) time.Duration { return b.Ready }
	tests := []struct {
		name string
		in   []time.Duration
		want time.Duration
	}{
		{name: "none", want: 0},
		{name: "one", in: []time.Duration{7}, want: 7},
		{name: "odd", in: []time.Duration{9, 1, 5}, want: 5},
		{name: "even takes lower middle", in: []time.Duration{4, 1, 3, 2}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts []bootTiming
			for _, d := range tt.in {
				ts = append(ts, bootTiming{Ready: d})
			}
			if got := medianOf(ts, ready); got != tt.want {
				t.Errorf("medianOf(%v) = %v; want %v", tt.in, got, tt.want)
			}
		})
	}
}
