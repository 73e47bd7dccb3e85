package shim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
)

// guestProcFiles are the guest's procfs files Stats reads, and
// maxProcFile bounds what it accepts from each: the guest writes them.
var guestProcFiles = []string{"/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/diskstats"}

const maxProcFile = 256 << 10

// userHZ is the unit of /proc/stat's CPU times: fixed at 100 by the
// kernel's ABI whatever CONFIG_HZ is.
const userHZ = 100

// guestMetrics turns the guest's /proc/stat, /proc/meminfo and
// /proc/loadavg into the cgroup v2 numbers containerd expects from a task
// (`ctr task metrics`, the CRI's container stats): the whole guest is the
// container. Every field comes from the guest, so each is parsed with
// bounds and a malformed file is an error, never a panic.
func guestMetrics(stat, meminfo, loadavg, diskstats []byte) (*stats.Metrics, error) {
	for _, b := range [][]byte{stat, meminfo, loadavg, diskstats} {
		if len(b) > maxProcFile {
			return nil, fmt.Errorf("guest procfs file of %d bytes: more than %d", len(b), maxProcFile)
		}
	}
	cpu, err := parseProcStat(stat)
	if err != nil {
		return nil, fmt.Errorf("/proc/stat: %w", err)
	}
	mem, err := parseMeminfo(meminfo)
	if err != nil {
		return nil, fmt.Errorf("/proc/meminfo: %w", err)
	}
	tasks, err := parseLoadavgTasks(loadavg)
	if err != nil {
		return nil, fmt.Errorf("/proc/loadavg: %w", err)
	}
	io, err := parseDiskstats(diskstats)
	if err != nil {
		return nil, fmt.Errorf("/proc/diskstats: %w", err)
	}
	return &stats.Metrics{CPU: cpu, Memory: mem, Pids: &stats.PidsStat{Current: tasks}, Io: io}, nil
}

// maxDisks bounds the devices reported (a guest has a handful).
const maxDisks = 64

// parseDiskstats gives the bytes and operations read and written on each
// of the guest's virtio disks (vda, vdb…: its root, its writable layer and
// extra disks) as cgroup v2 io.stat entries. Lines of other devices
// (partitions, loop, ram) are skipped. Fields: major minor name reads
// merged sectors ms writes merged sectors …; a sector is 512 bytes.
func parseDiskstats(b []byte) (*stats.IOStat, error) {
	io := &stats.IOStat{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxProcFile)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			if len(f) == 0 {
				continue
			}
			return nil, fmt.Errorf("line with %d fields; want at least 10", len(f))
		}
		if !isVirtioDisk(f[2]) {
			continue
		}
		if len(io.Usage) == maxDisks {
			return nil, fmt.Errorf("more than %d disks", maxDisks)
		}
		var v [9]uint64 // major minor - reads merged sectors ms writes merged sectors
		for i, idx := range []int{0, 1, 3, 5, 7, 9} {
			n, err := strconv.ParseUint(f[idx], 10, 64)
			// Bounded so ×512 cannot wrap (2^54 sectors is 8 EiB).
			if err != nil || n > 1<<54 {
				return nil, fmt.Errorf("%s field %d: %q: not a count", f[2], idx+1, f[idx])
			}
			v[i] = n
		}
		if v[0] > 1<<32-1 || v[1] > 1<<32-1 {
			return nil, fmt.Errorf("%s: device %d:%d out of range", f[2], v[0], v[1])
		}
		io.Usage = append(io.Usage, &stats.IOEntry{Major: v[0], Minor: v[1],
			Rios: v[2], Rbytes: v[3] * 512, Wios: v[4], Wbytes: v[5] * 512})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return io, nil
}

// isVirtioDisk reports whether name is a whole virtio-blk disk: "vd"
// followed by letters only (vda, vdab), not a partition (vda1).
func isVirtioDisk(name string) bool {
	rest, ok := strings.CutPrefix(name, "vd")
	if !ok || rest == "" || len(rest) > 4 {
		return false
	}
	for _, c := range rest {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// parseProcStat reads the aggregate "cpu" line: user nice system idle
// iowait irq softirq steal …, in USER_HZ ticks.
func parseProcStat(b []byte) (*stats.CPUStat, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxProcFile)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("cpu line has %d fields; want at least 8", len(f))
		}
		var t [7]uint64 // user nice system idle iowait irq softirq
		for i := range t {
			v, err := strconv.ParseUint(f[1+i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("cpu field %d: %w", i+1, err)
			}
			// Bounded so the sums and the µs conversion cannot wrap:
			// 2^40 ticks is 348 years of one CPU.
			if v > 1<<40 {
				return nil, fmt.Errorf("cpu field %d: %d ticks is implausible", i+1, v)
			}
			t[i] = v
		}
		const usec = 1_000_000 / userHZ
		user := (t[0] + t[1]) * usec
		system := (t[2] + t[5] + t[6]) * usec
		return &stats.CPUStat{UsageUsec: user + system, UserUsec: user, SystemUsec: system}, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("no cpu line")
}

// parseMeminfo gives memory in use (MemTotal - MemAvailable, as free(1)
// counts it) and the limit (MemTotal), in bytes.
func parseMeminfo(b []byte) (*stats.MemoryStat, error) {
	var total, avail uint64
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, maxProcFile)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("%s: %q: want \"N kB\"", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || kb > 1<<44 { // 16 PiB: more is a lie, and ×1024 must not wrap
			return nil, fmt.Errorf("%s: %q: not a size", key, f[0])
		}
		if key == "MemTotal" {
			total, haveTotal = kb<<10, true
		} else {
			avail, haveAvail = kb<<10, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !haveTotal || !haveAvail {
		return nil, errors.New("no MemTotal or MemAvailable")
	}
	if avail > total {
		return nil, fmt.Errorf("MemAvailable %d > MemTotal %d", avail, total)
	}
	return &stats.MemoryStat{Usage: total - avail, UsageLimit: total}, nil
}

// parseLoadavgTasks reads the number of tasks (threads) from the fourth
// field of /proc/loadavg, "running/total".
func parseLoadavgTasks(b []byte) (uint64, error) {
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return 0, fmt.Errorf("%d fields; want 5", len(f))
	}
	_, total, ok := strings.Cut(f[3], "/")
	if !ok {
		return 0, fmt.Errorf("field 4 %q: want running/total", f[3])
	}
	n, err := strconv.ParseUint(total, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("field 4 %q: %w", f[3], err)
	}
	return n, nil
}
