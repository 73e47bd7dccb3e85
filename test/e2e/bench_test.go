package e2e

import (
	"sort"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
)

// BenchmarkBareBoot boots the guest kernel with agentd in probe mode under
// QEMU and waits for power-off: the floor any sandbox start pays.
func BenchmarkBareBoot(b *testing.B) {
	env := e2etest.Require(b)
	agentd := e2etest.Build(b, "./cmd/agentd")
	initrd := e2etest.Initramfs(b, agentd, nil)
	var times []time.Duration
	for b.Loop() {
		g := e2etest.Start(b, env, e2etest.Boot{Initrd: initrd, Cmdline: []string{"MSB_PROBE=1"}})
		if exit := g.Wait(b); exit.Err != nil || exit.Panicked {
			b.Fatalf("boot: %+v", exit)
		}
		times = append(times, time.Since(g.Started))
	}
	reportMedian(b, times)
}

// BenchmarkRunTrue times `msb run --rootfs DIR -- true` from CLI start to
// exit: sandbox row, upper image, sandbox process, boot, relay, exec,
// shutdown and removal.
func BenchmarkRunTrue(b *testing.B) {
	c := newCLI(b)
	rootfs := busyboxRootfs(b)
	c.must(0, "run", "--rootfs", rootfs, "--", "true") // warm the rootfs cache
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		c.must(0, "run", "--rootfs", rootfs, "--", "true")
		times = append(times, time.Since(start))
	}
	reportMedian(b, times)
}

func reportMedian(b *testing.B, times []time.Duration) {
	if len(times) == 0 {
		return
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-ms")
}
