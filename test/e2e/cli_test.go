package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/launch"
)

// cli is the msb binary with agentd beside it and a private MSB_HOME.
type cli struct {
	t    testing.TB
	bin  string
	home string
	env  []string
}

func newCLI(t testing.TB) *cli {
	t.Helper()
	env := e2etest.Require(t)
	msbBin := e2etest.Build(t, "./cmd/msb")
	agentd := e2etest.Build(t, "./cmd/agentd")
	dir := t.TempDir()
	// Hard links: the binaries as `go build` wrote them, as a user runs
	// them. A copy written in one 20 MB write sits in the page cache in
	// large folios, and the kernel (6.18 here) maps a whole folio on a
	// fault, which made msb's text look ~8 MiB larger in the RSS rows of
	// make compare (README). A copy only where linking fails.
	for src, name := range map[string]string{msbBin: "msb", agentd: "agentd"} {
		dst := filepath.Join(dir, name)
		if os.Link(src, dst) == nil {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(t.TempDir(), "home")
	c := &cli{t: t, bin: filepath.Join(dir, "msb"), home: home,
		env: append(os.Environ(), "MSB_HOME="+home, "MSB_KERNEL="+env.Kernel)}
	t.Cleanup(func() {
		// Leave nothing running, whatever the test did.
		out, _ := c.run(context.Background(), nil, "ls", "--format", "json")
		var list []struct{ Name string }
		_ = json.Unmarshal(out.stdout, &list)
		for _, s := range list {
			c.run(context.Background(), nil, "rm", "-f", s.Name)
		}
	})
	return c
}

// sdkFor points the SDK in this test process at c: its msb binary, home
// and kernel.
func sdkFor(tb testing.TB, c *cli) {
	tb.Setenv("MSB_PATH", c.bin)
	tb.Setenv("MSB_HOME", c.home)
	for _, kv := range c.env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "MSB_KERNEL" {
			tb.Setenv(k, v)
		}
	}
}

type result struct {
	stdout, stderr []byte
	code           int
}

func (c *cli) run(ctx context.Context, stdin []byte, args ...string) (result, error) {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.Bytes(), stderr: errb.Bytes()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
		err = nil
	}
	return r, err
}

// must runs msb and fails the test unless it exits with want.
func (c *cli) must(want int, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := c.run(ctx, nil, args...)
	if err != nil {
		c.t.Fatalf("msb %s: %v", strings.Join(args, " "), err)
	}
	if r.code != want {
		c.t.Fatalf("msb %s: exit %d; want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

type lsEntry struct {
	Name   string
	Status string
	PID    int
	Reason string
}

func (c *cli) ls() map[string]lsEntry {
	c.t.Helper()
	r := c.must(0, "ls", "--format", "json")
	var list []lsEntry
	if err := json.Unmarshal(r.stdout, &list); err != nil {
		c.t.Fatalf("ls json: %v: %s", err, r.stdout)
	}
	m := map[string]lsEntry{}
	for _, e := range list {
		m[e.Name] = e
	}
	return m
}

func busyboxRootfs(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(e2etest.RepoRoot(t), "scripts/images/busybox-rootfs.sh")).Output()
	if err != nil {
		t.Fatalf("busybox-rootfs.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestCLIRun is the first end-to-end `msb run`: output, exit code and an
// unnamed sandbox's removal.
func TestCLIRun(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	start := time.Now()
	r := c.must(3, "run", "--rootfs", rootfs, "--", "sh", "-c", "echo hello; exit 3")
	t.Logf("msb run -- sh -c 'echo hello; exit 3' took %v", time.Since(start))
	if string(r.stdout) != "hello\n" {
		t.Errorf("stdout = %q; want %q (stderr %q)", r.stdout, "hello\n", r.stderr)
	}
	if n := len(c.ls()); n != 0 {
		t.Errorf("ls after an unnamed run lists %d sandboxes; want 0", n)
	}
	// Piped stdin is streamed to the command.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	in := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	r2, err := c.run(ctx, in, "run", "--rootfs", rootfs, "--", "wc", "-c")
	if err != nil || r2.code != 0 || strings.TrimSpace(string(r2.stdout)) != "1048576" {
		t.Errorf("echo 1MiB | msb run -- wc -c = %q exit %d err %v stderr %s; want 1048576", r2.stdout, r2.code, err, r2.stderr)
	}
	// A command that does not exist: exit 127 with a hint.
	r3 := c.must(127, "run", "--rootfs", rootfs, "--", "no-such-command")
	if !strings.Contains(string(r3.stderr), "command not found") {
		t.Errorf("stderr = %q; want a command-not-found message", r3.stderr)
	}
}

// TestCLIRunTimings checks that `msb run --timings` leaves the command's
// output alone and prints, on stderr, the stages of both processes and of
// the guest in order.
func TestCLIRunTimings(t *testing.T) {
	c := newCLI(t)
	r := c.must(0, "run", "--timings", "--rootfs", busyboxRootfs(t), "--", "echo", "hi")
	if string(r.stdout) != "hi\n" {
		t.Errorf("stdout = %q; want %q", r.stdout, "hi\n")
	}
	stderr := string(r.stderr)
	last := -1
	for _, stage := range []string{
		"store open", "upper layer created", "spawn sandbox process", "sandbox process: main",
		"sandbox process: VMM started", "guest: agentd starts", "guest: root assembled",
		"sandbox process: agentd core.ready", "sandbox process: agent stream on vsock", "cli: exec exited", "cli: sandbox process exited", "cli: exit",
	} {
		i := strings.Index(stderr, stage)
		if i < 0 || i < last {
			t.Errorf("--timings output lacks %q after the stages before it:\n%s", stage, stderr)
			continue
		}
		last = i
	}
}

// TestCLILifecycle drives a named sandbox through create, exec, stop, start,
// exec and rm, with files surviving the restart and two concurrent clients.
func TestCLILifecycle(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "box")
	if e := c.ls()["box"]; e.Status != "Running" || e.PID == 0 {
		t.Fatalf("after create: %+v; want Running with a pid", e)
	}
	c.must(0, "exec", "box", "--", "sh", "-c", "echo kept > /root/file")
	checkConfined(t, c.ls()["box"].PID)
	checkHugeRAM(t, c.ls()["box"].PID)
	// The runtime share: the host sees the guest's heartbeat.
	var hb launch.Heartbeat
	var hbErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if hb, hbErr = launch.ReadHeartbeat(filepath.Join(c.home, "sandboxes", "box", "guest", "heartbeat.json")); hbErr == nil {
			break
		}
	}
	if hbErr != nil || time.Since(hb.Timestamp) > time.Minute {
		t.Errorf("guest heartbeat on the host = %+v, %v; want a fresh one through the runtime share", hb, hbErr)
	}

	var wg sync.WaitGroup
	errs := make(chan string, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r, err := c.run(ctx, nil, "exec", "box", "--", "sh", "-c", "sleep 1; echo client-$0", string(rune('a'+i)))
			if err != nil || r.code != 0 || strings.TrimSpace(string(r.stdout)) != "client-"+string(rune('a'+i)) {
				errs <- string(r.stdout) + string(r.stderr)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent exec: %s", e)
	}

	var m struct {
		CPUPercent               float64
		MemoryBytes, MemoryLimit int64
	}
	r0 := c.must(0, "metrics", "--format", "json", "box")
	if err := json.Unmarshal(r0.stdout, &m); err != nil || m.MemoryBytes <= 0 || m.MemoryLimit != 512<<20 {
		t.Errorf("msb metrics = %s (%v); want a sample with memory and the 512 MiB limit", r0.stdout, err)
	}
	c.must(0, "stop", "box")
	if e := c.ls()["box"]; e.Status != "Stopped" || e.PID != 0 {
		t.Fatalf("after stop: %+v; want Stopped", e)
	}
	c.must(0, "start", "box")
	r := c.must(0, "exec", "box", "--", "cat", "/root/file")
	if string(r.stdout) != "kept\n" {
		t.Errorf("file after restart = %q; want %q", r.stdout, "kept\n")
	}
	c.must(1, "rm", "box") // running: refused
	c.must(0, "rm", "-f", "box")
	if _, ok := c.ls()["box"]; ok {
		t.Errorf("box still listed after rm")
	}
}

// TestCLICrash kills the sandbox process with SIGKILL: its QEMU must die with
// it and the next ls must report the sandbox as crashed.
func TestCLICrash(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "victim")
	pid := c.ls()["victim"].PID
	if pid == 0 {
		t.Fatal("no sandbox pid")
	}
	qemuPIDs := children(pid)
	if len(qemuPIDs) == 0 {
		t.Fatalf("sandbox process %d has no QEMU child", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, q := range qemuPIDs {
		for processExists(q) {
			if time.Now().After(deadline) {
				t.Fatalf("QEMU %d still running 10 s after its sandbox process was killed", q)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for processExists(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if e := c.ls()["victim"]; e.Status != "Crashed" || e.Reason != "InternalError" {
		t.Errorf("after kill -9: %+v; want Crashed / InternalError", e)
	}
}

// TestCLIPolicies: idle timeout and max duration stop a sandbox with the
// right reason.
func TestCLIPolicies(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "idle", "--idle-timeout", "2s")
	c.must(0, "create", "--rootfs", rootfs, "--name", "short", "--max-duration", "20s")
	deadline := time.Now().Add(90 * time.Second)
	for {
		ls := c.ls()
		if ls["idle"].Status == "Stopped" && ls["short"].Status == "Stopped" {
			if got := ls["idle"].Reason; got != "IdleTimeout" {
				t.Errorf("idle sandbox reason = %q; want IdleTimeout", got)
			}
			if got := ls["short"].Reason; got != "MaxDurationExceeded" {
				t.Errorf("short sandbox reason = %q; want MaxDurationExceeded", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandboxes still running after 90 s: %+v", ls)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == itoa(pid) {
			out = append(out, atoi(e.Name()))
		}
	}
	return out
}

func processExists(pid int) bool {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func itoa(i int) string { return strconv.Itoa(i) }

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// TestCLIGuestClock: the guest has no RTC; msb hands it the host's clock.
func TestCLIGuestClock(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	before := time.Now().Unix()
	r := c.must(0, "run", "--rootfs", rootfs, "--", "date", "+%s")
	after := time.Now().Unix()
	got, err := strconv.ParseInt(strings.TrimSpace(string(r.stdout)), 10, 64)
	if err != nil || got < before-2 || got > after+2 {
		t.Errorf("guest date = %q; want within [%d, %d]", r.stdout, before, after)
	}

	// Not only at boot: a guest clock set back a day is corrected from the
	// host's within seconds (TLS interception mints certificates by the
	// host's clock).
	r = c.must(0, "run", "--rootfs", rootfs, "--", "sh", "-c",
		"date -s @$(( $(date +%s) - 86400 )) >/dev/null; for i in $(seq 30); do sleep 1; "+
			"[ $(date +%s) -gt $(( "+strconv.FormatInt(time.Now().Unix(), 10)+" - 60 )) ] && break; done; date +%s")
	got, err = strconv.ParseInt(strings.TrimSpace(string(r.stdout)), 10, 64)
	if now := time.Now().Unix(); err != nil || got < now-60 || got > now+5 {
		t.Errorf("guest date after being set back a day = %q; want it corrected to the host's (%d)", r.stdout, now)
	}
}

// TestCLIParentDeath: an attached sandbox stops when the msb process that
// owns it dies, even by SIGKILL; its VM goes with it.
func TestCLIParentDeath(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	cmd := exec.Command(c.bin, "run", "--rootfs", rootfs, "--name", "orphan", "--", "sleep", "600")
	cmd.Env = c.env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var pid int
	for pid == 0 {
		if e := c.ls()["orphan"]; e.PID != 0 {
			pid = e.PID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sandbox never came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // let the command start
	qemu := children(pid)
	cmd.Process.Kill()
	cmd.Wait()
	for {
		e := c.ls()["orphan"]
		if e.Status == "Stopped" {
			if e.Reason != "Signal" {
				t.Errorf("reason = %q; want Signal", e.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox still %s 2 min after its parent was killed", e.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, q := range qemu {
		if processExists(q) {
			t.Errorf("QEMU %d outlived its sandbox", q)
		}
	}
}

// TestCLILogs: exec output lands in exec.log and `msb logs` shows it; the
// system source adds the lifecycle markers and the runtime log.
func TestCLILogs(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	c.must(0, "create", "--rootfs", rootfs, "--name", "talker")
	c.must(0, "exec", "talker", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2")
	r := c.must(0, "logs", "talker")
	if !strings.Contains(string(r.stdout), "to-stdout\n") || !strings.Contains(string(r.stdout), "to-stderr\n") {
		t.Errorf("msb logs = %q; want both lines", r.stdout)
	}
	r = c.must(0, "logs", "--source", "stderr", "talker")
	if strings.Contains(string(r.stdout), "to-stdout") || !strings.Contains(string(r.stdout), "to-stderr") {
		t.Errorf("msb logs --source stderr = %q; want only stderr", r.stdout)
	}
	c.must(0, "stop", "talker")
	r = c.must(0, "logs", "--source", "system", "talker")
	for _, want := range []string{"--- sandbox started ---", "--- sandbox stopped ---", "agent ready"} {
		if !strings.Contains(string(r.stdout), want) {
			t.Errorf("msb logs --source system lacks %q:\n%s", want, r.stdout)
		}
	}
	r = c.must(0, "logs", "--tail", "1", "talker")
	if got := strings.Count(string(r.stdout), "\n"); got != 1 {
		t.Errorf("--tail 1 printed %d lines: %q", got, r.stdout)
	}
}

// TestCLIScripts: --copy places host files before boot; --script and
// --script-path install executables first on every command's PATH.
func TestCLIScripts(t *testing.T) {
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	hostScript := filepath.Join(t.TempDir(), "from-file")
	if err := os.WriteFile(hostScript, []byte("#!/bin/sh\necho file-script \"$@\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "a"), []byte("copied-a\n"), 0o644)
	os.MkdirAll(filepath.Join(data, "sub"), 0o755)
	os.WriteFile(filepath.Join(data, "sub", "b"), []byte("copied-b\n"), 0o644)
	r := c.must(0, "run", "--rootfs", rootfs, "--copy", data+":/data", "--upper-size", "300M", "--",
		"sh", "-c", "cat /data/a /data/sub/b; df -m /.msb/rootfs/upperfs | tail -1 | tr -s ' ' | cut -d' ' -f2")
	lines := strings.Split(strings.TrimSpace(string(r.stdout)), "\n")
	if len(lines) != 3 || lines[0] != "copied-a" || lines[1] != "copied-b" {
		t.Fatalf("--copy: guest printed %q; want both files, then the upper's size", r.stdout)
	}
	if mb, err := strconv.Atoi(lines[2]); err != nil || mb < 250 || mb > 300 {
		t.Errorf("--upper-size 300M: the upper filesystem has %q MiB; want 250-300", lines[2])
	}
	r = c.must(0, "run", "--rootfs", rootfs,
		"--script", "greet=#!/bin/sh\necho hello $1",
		"--script-path", "fromfile:"+hostScript,
		"--", "sh", "-c", "greet world; fromfile x; echo $PATH")
	want := "hello world\nfile-script x\n/.msb/scripts:"
	if !strings.HasPrefix(string(r.stdout), want) {
		t.Errorf("output = %q; want prefix %q", r.stdout, want)
	}
}

// checkConfined asserts that the sandbox process and its QEMU child run
// under seccomp (mode 2, filter) with no_new_privs: both backends' processes
// are confined, not only the native one.
func checkConfined(t *testing.T, sandboxPID int) {
	t.Helper()
	pids := map[string]int{"sandbox process": sandboxPID}
	if q := qemuChild(sandboxPID); q != 0 {
		pids["qemu"] = q
	} else {
		t.Errorf("no qemu child of the sandbox process %d found", sandboxPID)
	}
	for name, pid := range pids {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(line, ":")
			fields[k] = strings.TrimSpace(v)
		}
		if fields["Seccomp"] != "2" || fields["NoNewPrivs"] != "1" {
			t.Errorf("%s (pid %d): Seccomp %q NoNewPrivs %q; want 2 and 1", name, pid, fields["Seccomp"], fields["NoNewPrivs"])
		}
	}
}

// qemuChild returns the pid of the sandbox process's QEMU, or 0. QEMU's
// parent is whichever thread of the sandbox process forked it.
func qemuChild(sandboxPID int) int {
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(sandboxPID) + "/task")
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(sandboxPID) + "/task/" + task.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.HasPrefix(string(comm), "qemu") {
				pid, _ := strconv.Atoi(f)
				return pid
			}
		}
	}
	return 0
}

// checkHugeRAM asserts that, where the sandbox process may mount (root) and
// the host gives tmpfs huge pages, the guest's RAM is on the huge-page file
// (internal/hostmem) and mapped 2 MiB at a time, not in a memfd.
func checkHugeRAM(t *testing.T, sandboxPID int) {
	t.Helper()
	shmem, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
	if os.Geteuid() != 0 || err != nil || strings.Contains(string(shmem), "[deny]") {
		t.Logf("guest RAM stays in a memfd here (euid %d, shmem_enabled %q, %v)", os.Geteuid(), shmem, err)
		return
	}
	q := qemuChild(sandboxPID)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", q))
	if err != nil {
		t.Fatalf("qemu cmdline: %v", err)
	}
	if !strings.Contains(string(cmdline), "memory-backend-file,") || !strings.Contains(string(cmdline), "align=2M") {
		t.Errorf("qemu's guest RAM is not the huge-page file: %q", strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", q))
	if err != nil {
		t.Fatalf("qemu smaps: %v", err)
	}
	for _, line := range strings.Split(string(rollup), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "ShmemPmdMapped:" {
			if kb, _ := strconv.Atoi(f[1]); kb < 2048 {
				t.Errorf("qemu maps %s kB of shared memory with huge pages; want the guest's RAM in 2 MiB pages", f[1])
			}
			return
		}
	}
	t.Errorf("no ShmemPmdMapped in qemu's smaps_rollup")
}
