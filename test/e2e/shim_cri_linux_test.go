package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/image"
)

// crictl drives a containerd's CRI as the kubelet would.
type crictl struct {
	bin, endpoint string
	env           []string
}

func (c *crictl) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, append([]string{"--runtime-endpoint", c.endpoint,
		"--image-endpoint", c.endpoint, "--timeout", "3m"}, args...)...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("crictl %s: %w\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (c *crictl) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// crictlBin finds crictl: MSB_CRICTL_BIN (make test sets it from
// scripts/crictl.sh) or the cache that script fills.
func crictlBin(t *testing.T) string {
	dir := os.Getenv("MSB_CRICTL_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "msb", "crictl", "v1.37.0", "bin")
	}
	p := filepath.Join(dir, "crictl")
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("crictl: %v: build it with scripts/crictl.sh (make test does)", err)
		if e2etest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// TestShimCRI runs a Kubernetes pod through containerd's CRI, with crictl as
// the kubelet: `crictl runp --runtime msb` boots one microVM for the pod's
// sandbox, and two containers created in it (`crictl create`/`start`) run
// in that same guest — each in its own image's root — with their logs,
// `crictl exec` and stop/remove behaving as under runc, which runs the same
// pod first for the timings. Nothing is left afterwards. Debian 12's
// containerd 1.6 and the 2.x one built from the module proxy.
func TestShimCRI(t *testing.T) {
	requireRoot(t, "the CRI e2e test")
	crictlPath := crictlBin(t)
	t.Run("debian", func(t *testing.T) {
		testShimCRI(t, requireTool(t, "containerd", "containerd"), requireTool(t, "ctr", "containerd"), crictlPath)
	})
	t.Run("v2", func(t *testing.T) {
		containerd, ctr := containerd2Bins(t)
		testShimCRI(t, containerd, ctr, crictlPath)
	})
}

const (
	// The pod's sandbox image: busybox's sleep stands in for
	// registry.k8s.io/pause, which no registry here serves.
	criPauseRef = "docker.io/library/msb-pause:e2e"
	// The containers' image: the busybox tree with a marker of its own.
	criImageRef = "docker.io/library/msb-busybox-cri:e2e"
	criMarker   = "from the container's image\n"
)

func testShimCRI(t *testing.T, containerd, ctr, crictlPath string) {
	if r, err := exec.Command(containerd, "--version").Output(); err == nil {
		t.Logf("%s", bytes.TrimSpace(r))
	}
	_, binDir, env := shimSetup(t)
	pauseTar := busyboxImageTar(t, criPauseRef, image.Config{Entrypoint: []string{"/bin/sleep", "2147483647"}}, nil)
	imgTar := busyboxImageTar(t, criImageRef, image.Config{Cmd: []string{"sh"}}, map[string]string{"etc/msb-cri-marker": criMarker})
	before := shimDirs()
	cleanShimDirs(t, before)
	cd := startContainerdCRI(t, containerd, ctr, binDir, env, func(dir string) string {
		// No CNI: the pods use the node's network (host network), so the
		// CRI needs no plugin. The streaming server (exec) on loopback.
		return fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which a CI
  # container may lack; runc's pod then fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.msb]
      runtime_type = "io.containerd.msb.v2"
`, criPauseRef, filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "conf"))
	})
	cd.must(t, 0, "-n", "k8s.io", "images", "import", pauseTar)
	cd.must(t, 0, "-n", "k8s.io", "images", "import", imgTar)
	cc := &crictl{bin: crictlPath, endpoint: "unix://" + cd.addr, env: cd.env}

	// The same pod under runc first: the reference for the start time.
	pt, err := runPod(t, cc, "runc", cd.dir)
	if err != nil {
		t.Fatalf("pod under runc: %v", err)
	}
	t.Logf("pod under runc: runp %v, create+start of a container %v", pt.runp, pt.ctr)

	start := time.Now()
	pod := cc.must(t, "runp", "--runtime", "msb", writeCRIConfig(t, cd.dir, "pod-msb.json", podConfig("msb", cd.dir)))
	runp := time.Since(start)
	dirs := newShimDirs(before)
	if len(dirs) != 1 {
		t.Fatalf("shim state directories after runp: %v; want one for the pod", dirs)
	}
	podCfg := filepath.Join(cd.dir, "pod-msb.json")
	var ctrs []string
	var ctrStart time.Duration
	for _, name := range []string{"c1", "c2"} {
		start := time.Now()
		id := cc.must(t, "create", pod, writeCRIConfig(t, cd.dir, name+".json", containerConfig(name)), podCfg)
		cc.must(t, "start", id)
		if name == "c1" {
			ctrStart = time.Since(start)
		}
		ctrs = append(ctrs, id)
	}
	t.Logf("pod under msb: runp (boot) %v, create+start of a container %v", runp.Round(time.Millisecond), ctrStart.Round(time.Millisecond))
	if l := newShimDirs(before); len(l) != 1 {
		t.Fatalf("shim state directories with two containers: %v; want the pod's only (one shim per pod)", l)
	}
	l := leftovers(binDir, dirs)
	qemus := 0
	for _, p := range l {
		if strings.Contains(p, "qemu-system") {
			qemus++
		}
	}
	if qemus != 1 {
		t.Fatalf("QEMU processes for a pod of two containers: %d (%q); want 1", qemus, l)
	}

	// Each container logs through the CRI, runs in its own image's root,
	// and both share one guest kernel that is not the host's.
	hostBoot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	var boots []string
	for i, id := range ctrs {
		name := fmt.Sprintf("c%d", i+1)
		waitLog(t, cc, id, "hello from "+name)
		if got := cc.must(t, "exec", "-s", id, "cat", "/etc/msb-cri-marker"); got+"\n" != criMarker {
			t.Errorf("%s: the marker of its image = %q; want %q", name, got, criMarker)
		}
		boots = append(boots, cc.must(t, "exec", "-s", id, "cat", "/proc/sys/kernel/random/boot_id"))
	}
	if boots[0] != boots[1] || boots[0] == strings.TrimSpace(string(hostBoot)) {
		t.Errorf("boot ids: c1 %s, c2 %s, host %s; want c1 = c2 (one VM) ≠ host", boots[0], boots[1], bytes.TrimSpace(hostBoot))
	}
	// The pod's resources (the kubelet's sums, here from the pod config)
	// size the VM: containerd passes them on the sandbox container.
	checkGuestSize(t, cc.must(t, "exec", "-s", ctrs[0], "sh", "-c", "nproc; grep MemTotal /proc/meminfo"), 2, 256)
	// A file one container writes in the VM's shared /dev/shm, the other reads.
	cc.must(t, "exec", "-s", ctrs[0], "sh", "-c", "echo shared > /dev/shm/msb-pod")
	if got := cc.must(t, "exec", "-s", ctrs[1], "cat", "/dev/shm/msb-pod"); got != "shared" {
		t.Errorf("c2 read %q from c1's /dev/shm file; want shared", got)
	}
	crictlExecTTY(t, cc, ctrs[1])
	// An exit code comes back through ExecSync.
	if out, err := cc.run(t, "exec", "-s", ctrs[0], "sh", "-c", "exit 7"); err == nil {
		t.Errorf("crictl exec of exit 7 succeeded (%q)", out)
	}

	// Stopping one container leaves the other and the pod running.
	cc.must(t, "stop", "--timeout", "10", ctrs[0])
	if st := containerState(t, cc, ctrs[0]); st != "CONTAINER_EXITED" {
		t.Errorf("c1 after stop: %s; want CONTAINER_EXITED", st)
	}
	if st := containerState(t, cc, ctrs[1]); st != "CONTAINER_RUNNING" {
		t.Errorf("c2 after c1's stop: %s; want CONTAINER_RUNNING", st)
	}
	cc.must(t, "rm", ctrs[0])
	if got := cc.must(t, "exec", "-s", ctrs[1], "echo", "still here"); got != "still here" {
		t.Errorf("c2 after c1's removal: %q", got)
	}
	cc.must(t, "stopp", pod)
	cc.must(t, "rmp", pod)

	deadline := time.Now().Add(30 * time.Second)
	for {
		l := leftovers(binDir, dirs)
		if len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after crictl rmp, still running: %q", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (strings.HasPrefix(f[4], dirs[0]+"/") || strings.HasPrefix(f[4], cd.dir+"/")) {
			t.Errorf("still mounted after crictl rmp: %s", f[4])
		}
	}
	if l := newShimDirs(before); len(l) != 0 {
		t.Errorf("shim state directories left: %v", l)
	}
}

type podTimes struct{ runp, ctr time.Duration }

// runPod runs the test's pod with one container under runtime and removes
// it, returning how long the pod and the container took to start.
func runPod(t *testing.T, cc *crictl, runtime, dir string) (podTimes, error) {
	t.Helper()
	podCfg := writeCRIConfig(t, dir, "pod-"+runtime+".json", podConfig(runtime, dir))
	start := time.Now()
	pod, err := cc.run(t, "runp", "--runtime", runtime, podCfg)
	if err != nil {
		return podTimes{}, err
	}
	pod = strings.TrimSpace(pod)
	var pt podTimes
	pt.runp = time.Since(start).Round(time.Millisecond)
	start = time.Now()
	id := cc.must(t, "create", pod, writeCRIConfig(t, dir, "c1-"+runtime+".json", containerConfig("c1")), podCfg)
	cc.must(t, "start", id)
	pt.ctr = time.Since(start).Round(time.Millisecond)
	waitLog(t, cc, id, "hello from c1")
	if got := cc.must(t, "exec", "-s", id, "cat", "/etc/msb-cri-marker"); got+"\n" != criMarker {
		t.Errorf("%s: marker %q", runtime, got)
	}
	cc.must(t, "stopp", pod)
	cc.must(t, "rmp", pod)
	return pt, nil
}

func podConfig(name, dir string) map[string]any {
	logDir := filepath.Join(dir, "podlogs", name)
	return map[string]any{
		"metadata":      map[string]any{"name": "msb-" + name, "namespace": "default", "uid": "uid-" + name, "attempt": 0},
		"log_directory": logDir,
		// network NODE: the node's network, no CNI. The pod's resources
		// as a kubelet sums them.
		"linux": map[string]any{
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}},
			"resources":        map[string]any{"cpu_period": 100000, "cpu_quota": 200000, "memory_limit_in_bytes": 256 << 20},
		},
	}
}

func containerConfig(name string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": criImageRef},
		"command":  []string{"sh", "-c", "echo hello from " + name + "; exec sleep 1000"},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
}

func writeCRIConfig(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitLog waits for want in a container's CRI log.
func waitLog(t *testing.T, cc *crictl, id, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := cc.run(t, "logs", id)
		if err == nil && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: log %q (%v); want %q", id, out, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containerState is the CRI state of container id.
func containerState(t *testing.T, cc *crictl, id string) string {
	t.Helper()
	var st struct {
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(cc.must(t, "inspect", "-o", "json", id)), &st); err != nil {
		t.Fatalf("crictl inspect %s: %v", id, err)
	}
	return st.Status.State
}

// crictlExecTTY runs `crictl exec -it` (kubectl exec -it's path: the CRI's
// streaming server, then the shim's Exec with a terminal and ResizePty) on
// a pseudo-terminal of 33×101 and checks the guest's terminal and size.
func crictlExecTTY(t *testing.T, cc *crictl, id string) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc.bin, "--runtime-endpoint", cc.endpoint, "--image-endpoint", cc.endpoint,
		"exec", "-it", id, "sh", "-c",
		`for i in 1 2 3 4 5 6 7 8 9 10; do [ "$(stty size)" = "33 101" ] && break; sleep 0.2; done; tty; stty size; exit 5`)
	cmd.Env = cc.env
	code, got := runOnPTY(t, cmd, 33, 101)
	// crictl itself exits 1 and reports the command's code (kubectl exits
	// with it).
	if code != 1 || !strings.Contains(got, "command terminated with exit code 5") ||
		!strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "33 101") {
		t.Fatalf("crictl exec -it: exit %d, output %q; want exit code 5 reported, a /dev/pts/ name and size 33 101", code, got)
	}
	t.Logf("crictl exec -it: %v", time.Since(start).Round(time.Millisecond))
}
