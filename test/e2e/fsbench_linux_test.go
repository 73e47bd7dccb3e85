package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkVirtiofs sets a bind volume (virtio-fs, served by the sandbox
// process) beside an ext4 image attached with --disk (virtio-blk, the guest's
// own ext4) in one sandbox and reports, per file system: sequential write and
// read of a 64 MiB file with dd bs=1M (MB/s; the write includes sync, the
// read follows sync and drop_caches, so it misses the guest's page cache but
// may hit the host's), and create+stat+unlink of 2000 files (ops/s). It also
// reports `msb cp` of the ~20 MiB, 301-file cpTree into the sandbox and back
// out, next to `tar c | tar x` of the same tree on the host (MiB/s).
//
// The guest times its own commands (10 ms resolution), so exec and relay
// overhead is not counted; msb cp is timed on the host from CLI start to exit, as a
// user sees it. The metadata loop is 2000 files, not 10000: under TCG a
// busybox shell loop of 10000 takes minutes per file system.
func BenchmarkVirtiofs(b *testing.B) {
	c := newCLI(b)
	rootfs := busyboxRootfs(b)
	vol := b.TempDir()
	img := filepath.Join(b.TempDir(), "disk.img")
	for _, args := range [][]string{{"truncate", "-s", "256M", img}, {"mkfs.ext4", "-q", "-F", img}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	c.must(0, "create", "--rootfs", rootfs, "--name", "fsb", "-v", vol+":/vol", "--disk", img+":/disk")
	defer c.must(0, "rm", "-f", "fsb")

	// timed runs script in the guest and returns how long each phase took:
	// the script calls `lap` after each phase and may call `mark` to start
	// the clock again. The clock is /proc/uptime read with the shell's own
	// read, so it forks nothing; its resolution is 10 ms (this busybox's date
	// has no %N).
	timed := func(script string) []time.Duration {
		b.Helper()
		r := c.must(0, "exec", "fsb", "--", "sh", "-c",
			"set -e; now() { read n x < /proc/uptime; n=${n%.*}${n#*.}; }; "+
				"lap() { now; echo lap $((n-s)); s=$n; }; mark() { now; s=$n; }; mark; "+script)
		var laps []time.Duration
		for _, l := range strings.Split(string(r.stdout), "\n") {
			ns, ok := strings.CutPrefix(l, "lap ")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(ns, 10, 64)
			if err != nil {
				b.Fatalf("timing output %q: %v", r.stdout, err)
			}
			laps = append(laps, time.Duration(n)*10*time.Millisecond)
		}
		if len(laps) == 0 {
			b.Fatalf("no timing in %q (stderr %q)", r.stdout, r.stderr)
		}
		return laps
	}
	dropped := true
	drop := func() {
		r, err := c.run(b.Context(), nil, "exec", "fsb", "--", "sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches")
		if err != nil || r.code != 0 {
			if dropped {
				b.Logf("drop_caches failed (exit %d, %v, %s): reads may hit the guest page cache", r.code, err, r.stderr)
			}
			dropped = false
		}
	}

	const fileMiB, files = 64, 2000
	dirs := []string{"/vol", "/disk"}
	type fsTimes struct{ write, read, meta []time.Duration }
	res := map[string]*fsTimes{}
	for _, d := range dirs {
		res[d] = &fsTimes{}
	}
	create, stat, unlink := map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}

	src := filepath.Join(b.TempDir(), "tree")
	size := cpTree(b, src)
	var cpIn, cpOut, hostTar []time.Duration
	loop := fmt.Sprintf("i=0; while [ $i -lt %d ]; do %%s; i=$((i+1)); done", files)

	for b.Loop() {
		for _, d := range dirs {
			f := d + "/big"
			r := res[d]
			r.write = append(r.write, timed(fmt.Sprintf("dd if=/dev/zero of=%s bs=1M count=%d 2>/dev/null; sync; lap", f, fileMiB))[0])
			drop()
			r.read = append(r.read, timed(fmt.Sprintf("dd if=%s of=/dev/null bs=1M 2>/dev/null; lap; rm %s", f, f))[0])

			// Create with the shell's own redirection and stat with its
			// test builtin, so no process is forked per file; unlink with
			// one rm over the directory's files.
			m := d + "/meta"
			laps := timed(fmt.Sprintf("mkdir -p %s; mark; %s; lap; %s; lap; rm -f %s/*; lap; rmdir %s",
				m, fmt.Sprintf(loop, ": > "+m+"/f$i"), fmt.Sprintf(loop, "[ -f "+m+"/f$i ]"), m, m))
			if len(laps) != 3 {
				b.Fatalf("metadata laps %v; want create, stat, unlink", laps)
			}
			create[d], stat[d], unlink[d] = append(create[d], laps[0]), append(stat[d], laps[1]), append(unlink[d], laps[2])
			r.meta = append(r.meta, laps[0]+laps[1]+laps[2])
		}

		start := time.Now()
		c.must(0, "cp", src, "fsb:/root/")
		cpIn = append(cpIn, time.Since(start))
		out := b.TempDir()
		start = time.Now()
		c.must(0, "cp", "fsb:/root/tree", out)
		cpOut = append(cpOut, time.Since(start))
		c.must(0, "exec", "fsb", "--", "rm", "-rf", "/root/tree")

		tarDir := b.TempDir()
		start = time.Now()
		tar := exec.Command("sh", "-c", `tar cf - -C "$1" tree | tar xf - -C "$2"`, "sh", filepath.Dir(src), tarDir)
		if out, err := tar.CombinedOutput(); err != nil {
			b.Fatalf("tar: %v: %s", err, out)
		}
		hostTar = append(hostTar, time.Since(start))
		os.RemoveAll(out)
		os.RemoveAll(tarDir)
	}

	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	mbps := func(d []time.Duration) float64 { return float64(fileMiB<<20) / 1e6 / med(d).Seconds() }
	opsps := func(d []time.Duration) float64 { return 3 * files / med(d).Seconds() }
	mib := float64(size) / (1 << 20)
	mibps := func(d []time.Duration) float64 { return mib / med(d).Seconds() }

	name := map[string]string{"/vol": "vol", "/disk": "disk"}
	for _, d := range dirs {
		b.ReportMetric(mbps(res[d].write), name[d]+"-write-MB/s")
		b.ReportMetric(mbps(res[d].read), name[d]+"-read-MB/s")
		b.ReportMetric(opsps(res[d].meta), name[d]+"-meta-ops/s")
	}
	b.ReportMetric(mibps(cpIn), "cp-in-MiB/s")
	b.ReportMetric(mibps(cpOut), "cp-out-MiB/s")
	b.ReportMetric(mibps(hostTar), "host-tar-MiB/s")

	b.Logf("median of %d; guest-timed, TCG", len(cpIn))
	b.Logf("%-34s %12s %12s", "", "/vol", "/disk")
	b.Logf("%-34s %12s %12s", "", "virtio-fs", "ext4 on blk")
	b.Logf("%-34s %12.1f %12.1f", fmt.Sprintf("seq write %d MiB, bs=1M (MB/s)", fileMiB), mbps(res["/vol"].write), mbps(res["/disk"].write))
	b.Logf("%-34s %12.1f %12.1f", fmt.Sprintf("seq read %d MiB, bs=1M (MB/s)", fileMiB), mbps(res["/vol"].read), mbps(res["/disk"].read))
	b.Logf("%-34s %12.0f %12.0f", fmt.Sprintf("create+stat+unlink %d (ops/s)", files), opsps(res["/vol"].meta), opsps(res["/disk"].meta))
	for _, p := range []struct {
		name string
		d    map[string][]time.Duration
	}{{"  create (ms)", create}, {"  stat (ms)", stat}, {"  unlink, one rm (ms)", unlink}} {
		b.Logf("%-34s %12d %12d", p.name, med(p.d["/vol"]).Milliseconds(), med(p.d["/disk"]).Milliseconds())
	}
	b.Logf("%.1f MiB in 301 files: msb cp in %.1f MiB/s (%v), out %.1f MiB/s (%v); host tar c | tar x %.1f MiB/s (%v)",
		mib, mibps(cpIn), med(cpIn).Round(time.Millisecond), mibps(cpOut), med(cpOut).Round(time.Millisecond),
		mibps(hostTar), med(hostTar).Round(time.Millisecond))
}
