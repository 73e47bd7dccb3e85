package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/sandbox"
)

// shimStateRoot is where containerd-shim-msb-v2 keeps each container's
// socket and MSB_HOME (internal/shim.stateRoot).
const shimStateRoot = "/run/msb-shim"

// privateContainerd is a containerd with its own root, state and socket,
// so the test neither needs nor touches the host's.
type privateContainerd struct {
	dir       string // root, state and socket live here
	addr, ctr string
	env       []string
}

func (c *privateContainerd) run(ctx context.Context, args ...string) (result, error) {
	cmd := exec.CommandContext(ctx, c.ctr, append([]string{"-a", c.addr}, args...)...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.Bytes(), stderr: errb.Bytes()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code, err = ee.ExitCode(), nil
	}
	return r, err
}

// must runs ctr and fails the test unless it exits with want.
func (c *privateContainerd) must(t *testing.T, want int, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r, err := c.run(ctx, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
	}
	if r.code != want {
		t.Fatalf("ctr %s: exit %d; want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// startContainerd starts containerd with PATH leading to binDir (where the
// shim is) and env for the shim, and waits until ctr can reach it.
func startContainerd(t *testing.T, containerd, ctr, binDir string, env []string) *privateContainerd {
	return startContainerdCRI(t, containerd, ctr, binDir, env, nil)
}

// startContainerdCRI is startContainerd with the CRI plugin configured by
// criCfg (given the containerd's directory), or disabled when criCfg is nil.
func startContainerdCRI(t *testing.T, containerd, ctr, binDir string, env []string, criCfg func(dir string) string) *privateContainerd {
	t.Helper()
	dir := t.TempDir()
	addr := filepath.Join(dir, "containerd.sock")
	cri := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if criCfg != nil {
		cri = ""
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
%s
[grpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), cri, addr, filepath.Join(dir, "opt"))
	if criCfg != nil {
		cfg += criCfg(dir)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var path string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	// containerd finds its shims on PATH: msb's first, then those that came
	// with this containerd (runc's).
	env = append(env, "PATH="+binDir+":"+filepath.Dir(containerd)+":"+path)
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(containerd, "--config", cfgPath, "--log-level", "debug")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("containerd log (shim lines):\n%s", grepLines(b, "msb", "shim", "error"))
		}
		// Whatever the test left, no shim or sandbox may outlive it.
		killUnder(binDir)
		unmountUnder(dir)
	})
	c := &privateContainerd{dir: dir, addr: addr, ctr: ctr, env: env}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		r, err := c.run(ctx, "version")
		cancel()
		if err == nil && r.code == 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not come up: %v %s", err, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func grepLines(b []byte, words ...string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range words {
			if strings.Contains(strings.ToLower(l), w) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > 200 {
		out = out[len(out)-200:]
	}
	return strings.Join(out, "\n")
}

// leftovers lists processes that belong to the shim's world: binaries from
// binDir (the shim, msb's sandbox process) or anything naming a shim state
// directory on its command line (QEMU does, through its sockets).
func leftovers(binDir string, dirs []string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cl := strings.ReplaceAll(string(cmdline), "\x00", " ")
		hit := strings.HasPrefix(exe, binDir+"/")
		for _, d := range dirs {
			hit = hit || strings.Contains(cl, d)
		}
		if hit {
			out = append(out, filepath.Base(p)+": "+cl)
		}
	}
	return out
}

func killUnder(binDir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if exe, _ := os.Readlink(filepath.Join(p, "exe")); strings.HasPrefix(exe, binDir+"/") {
			var pid int
			fmt.Sscan(filepath.Base(p), &pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder lazily unmounts whatever is still mounted below dir, so
// t.TempDir's removal does not fail on a container rootfs.
func unmountUnder(dir string) {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}

// newShimDirs lists the shim state directories that appeared since before.
func newShimDirs(before map[string]bool) []string {
	var out []string
	ents, _ := os.ReadDir(shimStateRoot)
	for _, e := range ents {
		if !before[e.Name()] {
			out = append(out, filepath.Join(shimStateRoot, e.Name()))
		}
	}
	return out
}

// TestShimContainerd is issue 16's first slice, with two containerds:
// Debian 12's (1.6, what a Debian user has) and a current 2.x built from the
// Go module proxy (scripts/containerd2.sh; MSB_CONTAINERD2_BIN names its
// directory). Each and its ctr run a busybox image, imported offline, in an
// msb microVM through containerd-shim-msb-v2: stdout and the exit code come
// back exactly, and a long-running container stopped with `ctr task kill`
// and removed with `ctr task delete` leaves no shim, sandbox process or QEMU
// behind.
func TestShimContainerd(t *testing.T) {
	requireRoot(t, "the shim e2e test")
	t.Run("debian", func(t *testing.T) {
		testShimContainerd(t, requireTool(t, "containerd", "containerd"), requireTool(t, "ctr", "containerd"))
	})
	t.Run("v2", func(t *testing.T) {
		containerd, ctr := containerd2Bins(t)
		testShimContainerd(t, containerd, ctr)
	})
}

func testShimContainerd(t *testing.T, containerd, ctr string) {
	if r, err := exec.Command(containerd, "--version").Output(); err == nil {
		t.Logf("%s", bytes.TrimSpace(r))
	}
	c, binDir, env := shimSetup(t)
	const ref = "docker.io/library/msb-busybox:e2e"
	tarPath := busyboxImageTar(t, ref, image.Config{Cmd: []string{"sh"}}, nil)
	before := shimDirs()
	cleanShimDirs(t, before)
	cd := startContainerd(t, containerd, ctr, binDir, env)
	cd.must(t, 0, "images", "import", tarPath)

	// The same container under runc (Debian's containerd ships its shim)
	// is the reference: same output, same exit code.
	start := time.Now()
	r := cd.must(t, 3, "run", "--rm", ref, "shim-runc", "sh", "-c", "echo hello; exit 3")
	if got := string(r.stdout); got != "hello\n" {
		t.Fatalf("ctr run with runc printed %q; want %q (stderr %s)", got, "hello\n", r.stderr)
	}
	t.Logf("ctr run --rm, runc: %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	r = cd.must(t, 3, "run", "--rm", "--runtime", "io.containerd.msb.v2", ref, "shim-run",
		"sh", "-c", "echo hello; exit 3")
	if got := string(r.stdout); got != "hello\n" {
		t.Fatalf("ctr run printed %q; want %q (stderr %s)", got, "hello\n", r.stderr)
	}
	t.Logf("ctr run --rm, msb shim (boot, command, delete): %v", time.Since(start).Round(time.Millisecond))

	// The spec's limits size the VM: 256 MiB for the workload plus the
	// guest's reserve, two vCPUs for a quota of two CPUs. The process gets
	// the spec's rlimits (containerd's default spec: RLIMIT_NOFILE
	// 1024:1024; the guest's own hard limit is higher).
	r = cd.must(t, 0, "run", "--rm", "--memory-limit", "268435456", "--cpus", "2", "--runtime", "io.containerd.msb.v2", ref,
		"shim-size", "sh", "-c", "ulimit -Sn; ulimit -Hn; nproc; grep MemTotal /proc/meminfo")
	limits, size, _ := strings.Cut(string(r.stdout), "\n")
	hard, size, _ := strings.Cut(size, "\n")
	if limits != "1024" || hard != "1024" {
		t.Errorf("RLIMIT_NOFILE in the container: %s:%s; want the spec's 1024:1024", limits, hard)
	}
	checkGuestSize(t, size, 2, 256)

	start = time.Now()
	c.must(3, "run", "--rootfs", busyboxRootfs(t), "--", "sh", "-c", "echo hello; exit 3")
	t.Logf("msb run --rootfs, same tree and command, for comparison: %v", time.Since(start).Round(time.Millisecond))

	// The long-running container gets a network namespace of its own, as
	// a pod's containers do (the CRI passes its path in the spec): msb's
	// sandbox process and QEMU must run in it.
	netns := newNetNS(t)
	start = time.Now()
	cd.must(t, 0, "run", "-d", "--null-io", "--with-ns", "network:"+netns, "--runtime", "io.containerd.msb.v2", ref,
		"shim-sleep", "sleep", "1000")
	t.Logf("ctr run -d (boot, start): %v", time.Since(start).Round(time.Millisecond))
	if got := taskStatus(t, cd, "shim-sleep"); got != "RUNNING" {
		t.Fatalf("task shim-sleep is %q after ctr run -d; want RUNNING", got)
	}
	dirs := newShimDirs(before)
	if len(dirs) != 1 {
		t.Fatalf("shim state directories created: %v; want one for shim-sleep", dirs)
	}
	l := leftovers(binDir, dirs)
	t.Logf("processes of the running container: %q", l)
	if len(l) < 2 {
		t.Fatalf("while running, processes of the container: %q; want the shim and the sandbox at least", l)
	}
	wantNS, err := os.Readlink(netns)
	if err != nil {
		t.Fatal(err)
	}
	inNS := 0
	for _, p := range l {
		pid, cmdline, _ := strings.Cut(p, ": ")
		if !strings.Contains(cmdline, "msb sandbox") && !strings.Contains(cmdline, "qemu-system") {
			continue
		}
		if got, _ := os.Readlink("/proc/" + pid + "/ns/net"); got != wantNS {
			t.Errorf("process %s (%.40s) is in network namespace %s; want the container's, %s", pid, cmdline, got, wantNS)
		}
		inNS++
	}
	if inNS != 2 {
		t.Errorf("found %d of the sandbox process and QEMU among %q; want both", inNS, l)
	}
	podMemory(t, l)
	start = time.Now()
	r = cd.must(t, 4, "task", "exec", "--exec-id", "e1", "shim-sleep", "sh", "-c", "echo out; echo err >&2; exit 4")
	if string(r.stdout) != "out\n" || !strings.Contains(string(r.stderr), "err\n") {
		t.Fatalf("ctr task exec: stdout %q, stderr %q; want \"out\\n\" and err", r.stdout, r.stderr)
	}
	t.Logf("ctr task exec: %v", time.Since(start).Round(time.Millisecond))
	execStdin(t, cd, "shim-sleep")
	execTTY(t, cd, "shim-sleep")
	shimPidsAndMetrics(t, cd, "shim-sleep")

	start = time.Now()
	cd.must(t, 0, "task", "kill", "shim-sleep") // SIGTERM
	deadline := time.Now().Add(time.Minute)
	for taskStatus(t, cd, "shim-sleep") != "STOPPED" {
		if time.Now().After(deadline) {
			t.Fatal("task shim-sleep still not STOPPED a minute after ctr task kill")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("ctr task kill to STOPPED: %v", time.Since(start).Round(time.Millisecond))
	// ctr 1.6's task delete exits 0 and warns with the task's status,
	// which must be 128+SIGTERM as with runc.
	r = cd.must(t, 0, "task", "delete", "shim-sleep")
	if want := "exit code 143"; !strings.Contains(string(r.stderr), want) {
		t.Fatalf("ctr task delete said %q; want it to report %q", r.stderr, want)
	}
	cd.must(t, 0, "container", "delete", "shim-sleep")

	deadline = time.Now().Add(10 * time.Second)
	for {
		l := leftovers(binDir, dirs)
		if len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after ctr task delete, still running: %q", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], cd.dir) {
			t.Errorf("still mounted after ctr task delete: %s", f[4])
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("shim state directory %s still there after delete (%v)", d, err)
		}
	}
	if l := newShimDirs(before); len(l) != 0 {
		t.Errorf("shim state directories left: %v", l)
	}
}

// checkGuestSize checks the output of `nproc; grep MemTotal
// /proc/meminfo` in a guest sized for cpus vCPUs and a memory limit of
// limitMiB: the guest's RAM is the limit plus the shim's reserve (64 MiB),
// less what its kernel keeps.
func checkGuestSize(t *testing.T, out string, cpus, limitMiB int) {
	t.Helper()
	var n, kb int
	if _, err := fmt.Sscanf(out, "%d\nMemTotal: %d kB", &n, &kb); err != nil {
		t.Fatalf("guest size output %q: %v", out, err)
	}
	if n != cpus || kb < limitMiB<<10 || kb > (limitMiB+64)<<10 {
		t.Errorf("guest has %d vCPUs and MemTotal %d kB; want %d and %d–%d kB", n, kb, cpus, limitMiB<<10, (limitMiB+64)<<10)
	}
}

// requireRoot fails (under MSB_REQUIRE_E2E) or skips a test that runs
// containerd and mounts, without root.
func requireRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if e2etest.Required() {
			t.Fatalf("%s needs root (containerd, mounts); MSB_REQUIRE_E2E=1 makes this a failure", what)
		}
		t.Skipf("%s needs root (containerd, mounts)", what)
	}
}

// containerd2Bins finds containerd 2.x and its ctr: MSB_CONTAINERD2_BIN
// (make test sets it from scripts/containerd2.sh) or the cache that script
// fills; with its runc shim, which the tests' reference runs need.
func containerd2Bins(t *testing.T) (containerd, ctr string) {
	t.Helper()
	dir := os.Getenv("MSB_CONTAINERD2_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "msb", "containerd2", "current", "bin")
	}
	containerd, ctr = filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr")
	for _, p := range []string{containerd, ctr, filepath.Join(dir, "containerd-shim-runc-v2")} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("containerd 2.x: %v: build it with scripts/containerd2.sh (make test does)", err)
			if e2etest.Required() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return containerd, ctr
}

// shimSetup builds msb, agentd and the shim into one directory and returns
// the CLI, that directory and the environment for containerd: the shim
// finds msb beside itself and MSB_KERNEL in it; no MSB_HOME, which the
// shim must not need (or use).
func shimSetup(t *testing.T) (*cli, string, []string) {
	t.Helper()
	c := newCLI(t) // msb and agentd in one directory, MSB_KERNEL
	binDir := filepath.Dir(c.bin)
	shim := e2etest.Build(t, "./cmd/containerd-shim-msb-v2")
	b, err := os.ReadFile(shim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "containerd-shim-msb-v2"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range c.env {
		if !strings.HasPrefix(kv, "MSB_HOME=") {
			env = append(env, kv)
		}
	}
	return c, binDir, env
}

// busyboxImageTar writes the busybox tree the other tests boot, plus the
// files in extra (path: content), as a docker-archive image named ref.
func busyboxImageTar(t *testing.T, ref string, cfg image.Config, extra map[string]string) string {
	t.Helper()
	tree := busyboxRootfs(t)
	if len(extra) > 0 {
		cp := filepath.Join(t.TempDir(), "tree")
		if out, err := exec.Command("cp", "-a", tree, cp).CombinedOutput(); err != nil {
			t.Fatalf("copy the busybox tree: %v: %s", err, out)
		}
		for p, data := range extra {
			if err := os.WriteFile(filepath.Join(cp, p), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		tree = cp
	}
	cfg.Env = append(cfg.Env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	img, err := image.ImageFromDir(t.Context(), tree, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	return tarPath
}

// cleanShimDirs removes, when the test ends, the shim state directories
// that appeared since before and whatever is still mounted in them. Call it
// before starting containerd: cleanups run last first, so this one runs
// after containerd's, once the shims are killed. A test that passes leaves
// nothing to clean (it checks so); a failed one must not leave a pod's
// roots bound under the shim's state, nor the state.
func cleanShimDirs(t *testing.T, before map[string]bool) {
	t.Cleanup(func() {
		for _, d := range newShimDirs(before) {
			unmountUnder(d + "/")
			_ = os.RemoveAll(d)
		}
	})
}

// shimDirs is the set of shim state directories that exist now.
func shimDirs() map[string]bool {
	m := map[string]bool{}
	if ents, err := os.ReadDir(shimStateRoot); err == nil {
		for _, e := range ents {
			m[e.Name()] = true
		}
	}
	return m
}

// taskStatus is the STATUS column of `ctr task ls` for id.
func taskStatus(t *testing.T, cd *privateContainerd, id string) string {
	t.Helper()
	r := cd.must(t, 0, "task", "ls")
	for _, l := range strings.Split(string(r.stdout), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// execStdin feeds an exec's stdin through containerd's fifo: ctr copies its
// own stdin there and, at its end, asks the shim to close it (CloseIO), so
// a command reading to EOF ends with what it was given: 200 KiB, more than
// one pipe's worth on every hop. (Not an empty stdin: ctr then ends its
// copy before it has set up its CloseIO, and the command waits for EOF —
// with runc too, 10 of 10 times with either containerd, tried by hand.)
func execStdin(t *testing.T, cd *privateContainerd, id string) {
	t.Helper()
	const execID = "in1"
	in := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cd.ctr, "-a", cd.addr, "task", "exec", "--exec-id", execID, id, "sh", "-c", "wc -c; exit 6")
	cmd.Env, cmd.Stdin = cd.env, bytes.NewReader(in)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); code != 6 || got != strconv.Itoa(len(in)) {
		t.Fatalf("ctr task exec with %d bytes on stdin: exit %d, wc -c said %q; want exit 6 and %d", len(in), code, got, len(in))
	}
	t.Logf("ctr task exec, %d bytes through stdin to EOF: %v", len(in), time.Since(start).Round(time.Millisecond))
}

// execTTY runs `ctr task exec --tty` on a pseudo-terminal of the test's
// own (ctr needs one) and checks that the command sees a terminal of the
// size ctr passed on, and that its exit code comes back.
func execTTY(t *testing.T, cd *privateContainerd, id string) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cd.ctr, "-a", cd.addr, "task", "exec", "--tty", "--exec-id", "t1", id,
		// ctr sends the size (ResizePty) only after Start, as it does for
		// runc: give it two seconds to land.
		"sh", "-c", `for i in 1 2 3 4 5 6 7 8 9 10; do [ "$(stty size)" = "33 101" ] && break; sleep 0.2; done; tty; stty size; exit 5`)
	cmd.Env = cd.env
	code, got := runOnPTY(t, cmd, 33, 101)
	if code != 5 || !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "33 101") {
		t.Fatalf("ctr task exec --tty: exit %d, output %q; want exit 5, a /dev/pts/ name and size 33 101", code, got)
	}
	t.Logf("ctr task exec --tty: %v", time.Since(start).Round(time.Millisecond))
}

// runOnPTY runs cmd on a pseudo-terminal of rows×cols and returns its exit
// code (-1 if it did not exit) and what it wrote, without carriage returns.
func runOnPTY(t *testing.T, cmd *exec.Cmd, rows, cols uint16) (int, string) {
	t.Helper()
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, ptmx); close(done) }()
	err = cmd.Wait()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err == nil {
		code = 0
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	return code, strings.ReplaceAll(out.String(), "\r", "")
}

// shimPidsAndMetrics checks `ctr task ps` (the task's pid, as `ctr task ls`
// reports it) and `ctr task metrics` (the guest's CPU time, memory and task
// count as cgroup v2 numbers) on a running container.
func shimPidsAndMetrics(t *testing.T, cd *privateContainerd, id string) {
	t.Helper()
	var pid string
	for _, l := range strings.Split(string(cd.must(t, 0, "task", "ls").stdout), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
			pid = f[1]
		}
	}
	ps := string(cd.must(t, 0, "task", "ps", id).stdout)
	if pid == "" || !slices.ContainsFunc(strings.Split(ps, "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 0 && f[0] == pid
	}) {
		t.Errorf("ctr task ps %s:\n%s\nwant the task's pid %q listed", id, ps, pid)
	}
	start := time.Now()
	r := cd.must(t, 0, "task", "metrics", "--format", "json", id)
	var m struct {
		CPU struct {
			UsageUsec uint64 `json:"usage_usec"`
		} `json:"cpu"`
		Memory struct {
			Usage      uint64 `json:"usage"`
			UsageLimit uint64 `json:"usage_limit"`
		} `json:"memory"`
		Pids struct {
			Current uint64 `json:"current"`
		} `json:"pids"`
		IO struct {
			Usage []struct {
				Major, Minor   uint64
				Rbytes, Wbytes uint64
				Rios           uint64
			} `json:"usage"`
		} `json:"io"`
	}
	if err := json.Unmarshal(r.stdout, &m); err != nil {
		t.Fatalf("ctr task metrics --format json: %v\n%s", err, r.stdout)
	}
	// The guest has 512 MiB (msb's default), less what its kernel keeps.
	if m.CPU.UsageUsec == 0 || m.Memory.Usage == 0 || m.Memory.Usage >= m.Memory.UsageLimit ||
		m.Memory.UsageLimit < 256<<20 || m.Memory.UsageLimit > 512<<20 || m.Pids.Current == 0 {
		t.Errorf("ctr task metrics: %s; want CPU time, memory in use below a limit near 512 MiB, tasks", r.stdout)
	}
	// Disk I/O of the guest's virtio disks: a container's root is served
	// live over virtio-fs, so it has none unless it mounts disks; the
	// parser's cases are TestGuestMetrics and FuzzGuestMetrics.
	var rbytes uint64
	for _, e := range m.IO.Usage {
		rbytes += e.Rbytes
	}
	t.Logf("ctr task metrics: %v; cpu %d µs, memory %d of %d MiB, %d tasks, %d disks (%d KiB read)", time.Since(start).Round(time.Millisecond),
		m.CPU.UsageUsec, m.Memory.Usage>>20, m.Memory.UsageLimit>>20, m.Pids.Current, len(m.IO.Usage), rbytes>>10)
}

// newNetNS creates a network namespace for the test and returns a path
// naming it: a thread of the test's own moves into a new namespace and
// stays there, never unlocked (the runtime discards it), until the test
// ends.
func newNetNS(t *testing.T) string {
	t.Helper()
	paths, errs, done := make(chan string), make(chan error, 1), make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errs <- err
			return
		}
		paths <- fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		<-done
	}()
	select {
	case err := <-errs:
		t.Fatalf("new network namespace: %v", err)
	case p := <-paths:
		return p
	}
	return ""
}

// podMemory logs what a running, idle container costs the host in memory,
// process by process — the figure docs/kubernetes.md's overhead.podFixed
// comes from: the shim's RSS, the sandbox process's, QEMU's beyond the
// guest RAM, and the guest RAM touched (kernel, agentd, the container's
// sleep). procs are "pid: cmdline" lines of the container's processes.
func podMemory(t *testing.T, procs []string) {
	var total int64
	for _, p := range procs {
		ps, cmdline, _ := strings.Cut(p, ": ")
		pid, err := strconv.Atoi(ps)
		if err != nil {
			t.Fatalf("process line %q", p)
		}
		rss, anon := procRSSKiB(t, pid), procStatusKiB(t, pid, "RssAnon")
		name := strings.Fields(cmdline)[0]
		if strings.Contains(cmdline, "qemu-system") {
			guest := guestRAMKiB(t, pid, sandbox.DefaultMemoryMiB)
			t.Logf("pod memory: QEMU RSS %d KiB beyond the guest RAM, anonymous %d KiB beyond it; guest RAM touched %d of %d MiB",
				rss-guest, anon-guest, guest>>10, sandbox.DefaultMemoryMiB)
			total += rss
			continue
		}
		t.Logf("pod memory: %s RSS %d KiB, anonymous %d KiB", name, rss, anon)
		total += rss
	}
	t.Logf("pod memory: all of the container's processes, guest RAM touched included: %d MiB", total>>10)
}
