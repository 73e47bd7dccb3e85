package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// The reliability tier: faults and load, each ending in a clear recorded
// state with no orphan process and no log line lost before the fault.
// TestReliability prints one table row per scenario: outcome and data
// lost (which must be none). CI runs the short budget; `make
// test-reliability` (MSB_RELIABILITY_FULL=1) the full one (1 GiB through
// stdout instead of 64 MiB).

type relRow struct {
	scenario, outcome, lost string
	ok                      bool
}

type relTable struct {
	mu   sync.Mutex
	rows []relRow
}

// record adds t's row once the subtest ends: failed subtests are rows too.
func (tb *relTable) record(t *testing.T, scenario string, outcome, lost *string) {
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		tb.rows = append(tb.rows, relRow{scenario, *outcome, *lost, !t.Failed()})
	})
}

func (tb *relTable) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SCENARIO\tRESULT\tOUTCOME\tDATA LOST")
	for _, r := range tb.rows {
		res := "pass"
		if !r.ok {
			res = "FAIL"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.scenario, res, r.outcome, r.lost)
	}
	w.Flush()
	return b.String()
}

// waitGone waits until none of pids exists.
func waitGone(t *testing.T, d time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, p := range pids {
		for processExists(p) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still exists %v after the fault (orphan)", p, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitStatus waits for the sandbox to leave Running and returns its entry.
func waitStatus(t *testing.T, c *cli, name string, d time.Duration) lsEntry {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		e := c.ls()[name]
		if e.Status != "Running" && e.Status != "Draining" {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s %v after the fault", name, e.Status, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// faultCase creates a sandbox, leaves a synced file and a log line in it,
// applies fault, and checks the recorded state, orphans, the log line, and
// that `msb start` brings the sandbox back with the file.
func faultCase(t *testing.T, c *cli, rootfs, name string, wantStatus string, fault func(sbPID int, vmm []int)) (outcome, lost string) {
	t.Helper()
	lost = "not checked"
	c.must(0, "create", "--rootfs", rootfs, "--name", name, "-m", "256")
	defer c.run(context.Background(), nil, "rm", "-f", name)
	marker := "before-fault-" + name
	c.must(0, "exec", name, "--", "sh", "-c", "echo kept > /root/keep; sync; echo "+marker)
	pid := c.ls()[name].PID
	vmm := children(pid)
	fault(pid, vmm)
	e := waitStatus(t, c, name, 2*time.Minute)
	outcome = e.Status + "/" + e.Reason
	waitGone(t, 15*time.Second, append([]int{pid}, vmm...)...)
	// The sandbox process's own death is reconciled as Crashed; a VM that
	// ends under a living sandbox process is recorded by it as Stopped
	// with a failure reason (reference §4: the exit observer never sets
	// Crashed), never as a clean completion.
	if e.Status != wantStatus || (wantStatus == "Stopped" && (e.Reason == "Completed" || e.Reason == "")) {
		t.Errorf("after the fault: %s; want %s with a failure reason", outcome, wantStatus)
	}
	var missing []string
	if logs := c.must(0, "logs", name); !strings.Contains(string(logs.stdout), marker) {
		missing = append(missing, "exec.log line before the fault")
	}
	if _, err := c.run(context.Background(), nil, "start", name); err != nil {
		t.Fatal(err)
	}
	if r := c.must(0, "exec", name, "--", "cat", "/root/keep"); strings.TrimSpace(string(r.stdout)) != "kept" {
		missing = append(missing, "synced file in the upper layer")
	}
	outcome += ", start recovers"
	lost = "none"
	if len(missing) > 0 {
		lost = strings.Join(missing, ", ")
		t.Errorf("lost after the fault: %s", lost)
	}
	return outcome, lost
}

// TestReliability runs the fault and load scenarios and prints the table.
func TestReliability(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	full := os.Getenv("MSB_RELIABILITY_FULL") == "1"
	var table relTable
	defer func() { t.Logf("reliability:\n%s", table.String()) }()

	run := func(scenario string, fn func(t *testing.T) (outcome, lost string)) {
		t.Run(strings.ReplaceAll(scenario, " ", "_"), func(t *testing.T) {
			outcome, lost := "did not finish", "not checked"
			table.record(t, scenario, &outcome, &lost)
			outcome, lost = fn(t)
		})
	}

	run("kill -9 sandbox process", func(t *testing.T) (string, string) {
		return faultCase(t, c, rootfs, "rel-sbkill", "Crashed", func(pid int, _ []int) {
			syscall.Kill(pid, syscall.SIGKILL)
		})
	})
	run("kill -9 QEMU", func(t *testing.T) (string, string) {
		return faultCase(t, c, rootfs, "rel-vmmkill", "Stopped", func(_ int, vmm []int) {
			for _, p := range vmm {
				syscall.Kill(p, syscall.SIGKILL)
			}
		})
	})
	run("guest PID 1 (agentd) dies", func(t *testing.T) (string, string) {
		return faultCase(t, c, rootfs, "rel-init", "Stopped", func(int, []int) {
			// SIGABRT reaches a Go PID 1 (the runtime handles it) and
			// makes it exit: the kernel then panics, "Attempted to kill
			// init".
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c.run(ctx, nil, "exec", "rel-init", "--", "kill", "-ABRT", "1")
		})
	})
	run("guest kernel panic", func(t *testing.T) (string, string) {
		return faultCase(t, c, rootfs, "rel-panic", "Stopped", func(int, []int) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c.run(ctx, nil, "exec", "rel-panic", "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
		})
	})
	run("disk full in the writable layer", func(t *testing.T) (string, string) {
		c.must(0, "create", "--rootfs", rootfs, "--name", "rel-full", "-m", "256", "--upper-size", "64M")
		defer c.run(context.Background(), nil, "rm", "-f", "rel-full")
		c.must(0, "exec", "rel-full", "--", "sh", "-c", "echo before-full-upper")
		r := c.must(1, "exec", "rel-full", "--", "sh", "-c", "dd if=/dev/zero of=/root/big bs=1M count=128 2>&1; sync; exit 1")
		if !strings.Contains(string(r.stdout), "No space left") {
			t.Errorf("dd into a full upper: %q; want ENOSPC", r.stdout)
		}
		c.must(0, "exec", "rel-full", "--", "sh", "-c", "rm /root/big && echo after > /root/after && sync")
		if e := c.ls()["rel-full"]; e.Status != "Running" {
			t.Errorf("after ENOSPC in the guest: %s; want Running", e.Status)
		}
		lost := "none"
		if logs := c.must(0, "logs", "rel-full"); !strings.Contains(string(logs.stdout), "before-full-upper") {
			lost = "exec.log line before the fault"
			t.Error(lost)
		}
		return "guest sees ENOSPC, sandbox keeps running, space freed and reused", lost
	})
	run("disk full for the host's logs and store", func(t *testing.T) (string, string) {
		return hostDiskFull(t, rootfs)
	})
	run("parent of an attached run killed", func(t *testing.T) (string, string) {
		return parentDeath(t, c, rootfs)
	})
	run("locked database", func(t *testing.T) (string, string) {
		return lockedDB(t, c, rootfs)
	})
	run("corrupt database", func(t *testing.T) (string, string) {
		return corruptDB(t)
	})
	run("16 concurrent exec clients", func(t *testing.T) (string, string) {
		c.must(0, "create", "--rootfs", rootfs, "--name", "rel-conc", "-m", "256")
		defer c.run(context.Background(), nil, "rm", "-f", "rel-conc")
		var wg sync.WaitGroup
		errs := make(chan string, 16)
		for i := range 16 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				want := fmt.Sprintf("client-%d", i)
				r, err := c.run(ctx, nil, "exec", "rel-conc", "--", "sh", "-c", "sleep 1; echo "+want)
				if err != nil || r.code != 0 || strings.TrimSpace(string(r.stdout)) != want {
					errs <- fmt.Sprintf("client %d: exit %d %v %q %s", i, r.code, err, r.stdout, r.stderr)
				}
			})
		}
		wg.Wait()
		close(errs)
		n := 0
		for e := range errs {
			t.Error(e)
			n++
		}
		return fmt.Sprintf("%d of 16 got their own output", 16-n), "none"
	})
	run("stdout flood", func(t *testing.T) (string, string) {
		size := int64(64 << 20)
		if full {
			size = 1 << 30
		}
		return stdoutFlood(t, c, rootfs, size)
	})
	run("20 concurrent msb run", func(t *testing.T) (string, string) {
		return concurrentRuns(t, c, rootfs, 20)
	})
}

// hostDiskFull runs a sandbox whose MSB_HOME is a small tmpfs, fills it,
// makes the guest write output (exec.log and the store's metrics cannot be
// written), frees the space, and checks that the sandbox process survived
// and kept what was logged before.
func hostDiskFull(t *testing.T, rootfs string) (string, string) {
	c := shortHomeCLI(t)
	if err := os.MkdirAll(c.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", c.home, "tmpfs", 0, "size=96m,mode=0700"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(c.home, unix.MNT_DETACH)
	c.must(0, "create", "--rootfs", rootfs, "--name", "rel-hostfull", "-m", "256", "--upper-size", "256M")
	defer c.run(context.Background(), nil, "rm", "-f", "rel-hostfull")
	c.must(0, "exec", "rel-hostfull", "--", "echo", "before-host-full")
	var st unix.Statfs_t
	if err := unix.Statfs(c.home, &st); err != nil {
		t.Fatal(err)
	}
	fill := filepath.Join(c.home, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	// tmpfs allocates on write; write until ENOSPC.
	buf := make([]byte, 1<<20)
	for written := int64(0); written < free+(1<<20); written += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	pid := c.ls()["rel-hostfull"].PID
	r, _ := c.run(context.Background(), nil, "exec", "rel-hostfull", "--", "sh", "-c", "seq 1 20000; echo during-host-full")
	during := fmt.Sprintf("exec during the fault: exit %d", r.code)
	time.Sleep(3 * time.Second) // a metrics sample and a heartbeat hit ENOSPC
	os.Remove(fill)
	if !processExists(pid) {
		t.Fatalf("the sandbox process died when the host disk filled (%s)", during)
	}
	c.must(0, "exec", "rel-hostfull", "--", "echo", "after-host-full")
	logs := string(c.must(0, "logs", "rel-hostfull").stdout)
	var lost []string
	for _, m := range []string{"before-host-full", "after-host-full"} {
		if !strings.Contains(logs, m) {
			lost = append(lost, m)
		}
	}
	if len(lost) > 0 {
		t.Errorf("exec.log lost %v", lost)
		return "sandbox process survived; " + during, strings.Join(lost, ", ")
	}
	return "sandbox process survived, logging resumed; " + during, "none (lines during the fault may be dropped)"
}

// lockedDB holds the store's write lock, as another program stuck in a
// write transaction would, while the CLI needs to write and a running
// sandbox process keeps writing its samples.
func lockedDB(t *testing.T, c *cli, rootfs string) (string, string) {
	c.must(0, "create", "--rootfs", rootfs, "--name", "rel-lock", "-m", "256")
	defer c.run(context.Background(), nil, "rm", "-f", "rel-lock")
	pid := c.ls()["rel-lock"].PID
	// The store is in WAL mode: its writers serialise on the WAL index's
	// write lock, byte 120 of msb.db-shm (SQLite's WALINDEX_LOCK_OFFSET +
	// WAL_WRITE_LOCK), an fcntl record lock. Take it from outside SQLite.
	shm := filepath.Join(c.home, "db", "msb.db-shm")
	f, err := os.OpenFile(shm, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 120, Len: 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("take the store's write lock: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // the sandbox process is writing a sample
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := c.run(ctx, nil, "create", "--rootfs", rootfs, "--name", "rel-lock2", "-m", "256")
	took := time.Since(start).Round(time.Second)
	lk.Type = unix.F_UNLCK
	unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if err != nil {
		t.Fatal(err)
	}
	outcome := fmt.Sprintf("msb create while locked: exit %d after %v: %s", r.code, took, firstLine(string(r.stderr)))
	msg := strings.ToLower(string(r.stderr))
	switch {
	case r.code == 0:
		t.Errorf("msb create succeeded while the store was write-locked")
	case !strings.Contains(msg, "lock") && !strings.Contains(msg, "busy"):
		t.Errorf("msb create's error does not say the store is locked: %s", r.stderr)
	case strings.Contains(msg, "goroutine "):
		t.Errorf("msb create crashed: %s", r.stderr)
	}
	if !processExists(pid) {
		t.Fatal("the sandbox process died while the store was locked")
	}
	if e := c.ls()["rel-lock"]; e.Status != "Running" {
		t.Errorf("after the lock: %s; want Running", e.Status)
	}
	c.must(0, "exec", "rel-lock", "--", "true")
	if e, ok := c.ls()["rel-lock2"]; ok && e.Status == "Running" {
		t.Errorf("the create refused under the lock left rel-lock2 %s", e.Status)
	}
	return outcome + "; the running sandbox kept running", "none"
}

// corruptDB overwrites the store's header and checks that msb says so
// clearly instead of crashing.
func corruptDB(t *testing.T) (string, string) {
	c := newCLI(t)
	c.must(0, "ls")
	db := filepath.Join(c.home, "db", "msb.db")
	f, err := os.OpenFile(db, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("garbage!", 16)), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r, err := c.run(context.Background(), nil, "ls")
	if err != nil {
		t.Fatal(err)
	}
	msg := string(r.stderr)
	if r.code == 0 || strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic") {
		t.Errorf("msb ls on a corrupt store: exit %d: %s", r.code, msg)
	}
	if !strings.Contains(msg, "msb.db") {
		t.Errorf("the error does not name the store file: %s", msg)
	}
	return "msb ls: exit " + strconv.Itoa(r.code) + ": " + firstLine(msg), "the store (by construction)"
}

// shortHomeCLI is newCLI with MSB_HOME at a short path: a subtest's
// TempDir is too long for the sandbox's unix sockets (108 bytes).
func shortHomeCLI(t *testing.T) *cli {
	c := newCLI(t)
	home, err := os.MkdirTemp("", "msbrel")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	c.home = filepath.Join(home, "h")
	for i, kv := range c.env {
		if strings.HasPrefix(kv, "MSB_HOME=") {
			c.env[i] = "MSB_HOME=" + c.home
		}
	}
	return c
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

// stdoutFlood streams size bytes of stdout from the guest and checks the
// count, the sandbox process's memory, and that exec.log stays within its
// rotation bound.
func stdoutFlood(t *testing.T, c *cli, rootfs string, size int64) (string, string) {
	c.must(0, "create", "--rootfs", rootfs, "--name", "rel-flood", "-m", "256")
	defer c.run(context.Background(), nil, "rm", "-f", "rel-flood")
	pid := c.ls()["rel-flood"].PID
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "exec", "rel-flood", "--", "sh", "-c",
		fmt.Sprintf("yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c %d", size))
	cmd.Env = c.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var peak int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
					for _, l := range strings.Split(string(b), "\n") {
						if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
							n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
							peak = max(peak, n)
						}
					}
				}
			}
		}
	})
	n, _ := io.Copy(io.Discard, out)
	werr := cmd.Wait()
	close(stop)
	wg.Wait()
	d := time.Since(start)
	if n != size || werr != nil {
		t.Errorf("received %d of %d bytes: %v", n, size, werr)
	}
	if peak > 256<<10 {
		t.Errorf("sandbox process RSS peaked at %d MiB during the flood", peak>>10)
	}
	var logBytes int64
	matches, _ := filepath.Glob(filepath.Join(c.home, "sandboxes", "rel-flood", "logs", "exec.log*"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			logBytes += fi.Size()
		}
	}
	if logBytes > 64<<20 {
		t.Errorf("exec.log and its rotations hold %d MiB after the flood", logBytes>>20)
	}
	return fmt.Sprintf("%d MiB in %v (%.0f MiB/s); sandbox RSS peak %d MiB; exec.log files %d MiB",
		size>>20, d.Round(time.Second), float64(size)/(1<<20)/d.Seconds(), peak>>10, logBytes>>20), "none"
}

// concurrentRuns starts n `msb run` at once; all must succeed.
func concurrentRuns(t *testing.T, c *cli, rootfs string, n int) (string, string) {
	var mu sync.Mutex
	var times []time.Duration
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			start := time.Now()
			r, err := c.run(ctx, nil, "run", "--rootfs", rootfs, "-m", "128", "--", "echo", strconv.Itoa(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil || r.code != 0 || strings.TrimSpace(string(r.stdout)) != strconv.Itoa(i) {
				t.Errorf("run %d: exit %d %v: %s", i, r.code, err, r.stderr)
				return
			}
			times = append(times, time.Since(start))
		})
	}
	wg.Wait()
	if len(times) == 0 {
		return fmt.Sprintf("0/%d succeeded", n), "none"
	}
	m := medianOfDur(times)
	p99 := times[0]
	for _, d := range times {
		p99 = max(p99, d)
	}
	return fmt.Sprintf("%d/%d succeeded; p50 %v, p99 %v", len(times), n, m.Round(100*time.Millisecond),
		p99.Round(100*time.Millisecond)), "none"
}

// parentDeath starts an attached `msb run` whose command runs for ten
// minutes, kills that CLI with SIGKILL once the command has printed, and
// checks the sandbox stops by itself (the watchdog pipe reaches EOF), leaves
// no sandbox process or VM behind, keeps the output in exec.log, and starts
// again.
func parentDeath(t *testing.T, c *cli, rootfs string) (string, string) {
	const name, marker = "rel-parent", "before-parent-death"
	defer c.run(context.Background(), nil, "rm", "-f", name)
	cmd := exec.Command(c.bin, "run", "--rootfs", rootfs, "--name", name, "-m", "256", "--",
		"sh", "-c", "echo "+marker+"; sync; sleep 600")
	cmd.Env = c.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	seen := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), marker) {
				seen <- true
				break
			}
		}
		io.Copy(io.Discard, out)
		close(seen)
	}()
	select {
	case ok := <-seen:
		if !ok {
			t.Fatal("msb run ended before its command printed")
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("msb run: no output from its command in 3 min")
	}
	pid := c.ls()[name].PID
	vmm := children(pid)
	killed := time.Now()
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	e := waitStatus(t, c, name, time.Minute)
	took := time.Since(killed).Round(100 * time.Millisecond)
	outcome := fmt.Sprintf("%s/%s after %v", e.Status, e.Reason, took)
	waitGone(t, 15*time.Second, append([]int{pid}, vmm...)...)
	if e.Status != "Stopped" {
		t.Errorf("after the parent died: %s; want Stopped", outcome)
	}
	lost := "none"
	if logs := c.must(0, "logs", name); !strings.Contains(string(logs.stdout), marker) {
		lost = "exec.log line before the fault"
		t.Error(lost)
	}
	c.must(0, "start", name)
	outcome += ", start recovers"
	return outcome, lost
}
