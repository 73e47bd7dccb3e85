package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/erofs/go-erofs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/store"
)

// localRegistry is Debian's docker-registry (the CNCF distribution server)
// on a free 127.0.0.1 port with a temporary storage directory.
type localRegistry struct {
	Host string // 127.0.0.1:port
	cmd  *exec.Cmd
}

// requireTool returns the path of bin, or skips (fails under
// MSB_REQUIRE_E2E=1) naming the Debian package that provides it.
func requireTool(t testing.TB, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		msg := fmt.Sprintf("%s not found: install the Debian package %s (scripts/setup.sh does)", bin, pkg)
		if e2etest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

func startRegistry(t testing.TB) *localRegistry {
	t.Helper()
	bin := requireTool(t, "docker-registry", "docker-registry")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &localRegistry{Host: addr, cmd: cmd}
	t.Cleanup(func() {
		r.stop()
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry on %s not ready after 15s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *localRegistry) stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// openImageStore opens an image store over a fresh msb home.
func openImageStore(t testing.TB) *image.Store {
	t.Helper()
	h, err := home.At(filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), h.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return image.Open(h, st, image.Options{})
}

// writeLayout writes img as an OCI image layout for skopeo to read.
func writeLayout(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

func skopeo(t testing.TB, args ...string) {
	t.Helper()
	bin := requireTool(t, "skopeo", "skopeo")
	// --insecure-policy: no /etc/containers/policy.json is needed for a
	// loopback test registry.
	cmd := exec.Command(bin, append([]string{"--insecure-policy"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkRootfs builds the image's EROFS and checks it with fsck.erofs and
// by reading want (path → substring of its content) from it.
func checkRootfs(t testing.TB, s *image.Store, img *image.Image, want map[string]string) {
	t.Helper()
	path, err := s.Rootfs(context.Background(), img)
	if err != nil {
		t.Fatalf("Rootfs(%s): %v", img.Ref, err)
	}
	fsck := requireTool(t, "fsck.erofs", "erofs-utils")
	if out, err := exec.Command(fsck, path).CombinedOutput(); err != nil {
		t.Errorf("fsck.erofs %s: %v\n%s", path, err, out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := erofs.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	for name, sub := range want {
		b, err := fs.ReadFile(e, name)
		if err != nil || !strings.Contains(string(b), sub) {
			t.Errorf("%s in the rootfs of %s: %v, %d bytes; want it to contain %q", name, img.Ref, err, len(b), sub)
		}
	}
}

// TestImageRegistryBusybox pushes a locally built busybox image to a real
// registry with msb's code and with skopeo, reads ours back with skopeo,
// pulls both with image.Store, checks their EROFS with fsck.erofs, and pulls
// again with the registry stopped.
func TestImageRegistryBusybox(t *testing.T) {
	e2etest.Require(t)
	ctx := t.Context()
	reg := startRegistry(t)
	rootfs := busyboxRootfs(t)
	img, err := image.ImageFromDir(ctx, rootfs, image.Config{Cmd: []string{"/bin/sh"},
		Env: []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ours := reg.Host + "/busybox:ours"
	theirs := reg.Host + "/busybox:skopeo"
	if err := openImageStore(t).Push(ctx, ours, img); err != nil {
		t.Fatalf("Push: %v", err)
	}
	skopeo(t, "copy", "--dest-tls-verify=false", "oci:"+writeLayout(t, img), "docker://"+theirs)
	// An independent client reads what we pushed.
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+ours, "dir:"+filepath.Join(t.TempDir(), "copy"))

	s := openImageStore(t)
	for _, ref := range []string{ours, theirs} {
		pulled, err := s.Pull(ctx, ref, image.PullIfMissing, nil)
		if err != nil {
			t.Fatalf("Pull(%s): %v", ref, err)
		}
		if ref == ours && pulled.ManifestDigest != wantDigest.String() {
			t.Errorf("Pull(%s) digest = %s; want %s", ref, pulled.ManifestDigest, wantDigest)
		}
		if len(pulled.Config.Cmd) != 1 || pulled.Config.Cmd[0] != "/bin/sh" {
			t.Errorf("Pull(%s) cmd = %q; want [/bin/sh]", ref, pulled.Config.Cmd)
		}
		checkRootfs(t, s, pulled, map[string]string{"etc/passwd": "root:x:0:0", "bin/busybox": "BusyBox"})
	}

	// Offline: a cached image needs no registry.
	reg.stop()
	if _, err := s.Pull(ctx, ours, image.PullIfMissing, nil); err != nil {
		t.Errorf("Pull(if-missing) with the registry stopped: %v", err)
	}
	if _, err := s.Pull(ctx, ours, image.PullAlways, nil); err == nil {
		t.Errorf("Pull(always) with the registry stopped = nil; want an error")
	}
}

// TestImageCLIPull drives `msb pull` and `msb image ls|rm|prune` against
// the real registry.
func TestImageCLIPull(t *testing.T) {
	e2etest.Require(t)
	ctx := t.Context()
	reg := startRegistry(t)
	img, err := image.ImageFromDir(ctx, busyboxRootfs(t), image.Config{Cmd: []string{"/bin/sh"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/cli/busybox:1"
	if err := openImageStore(t).Push(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	r := c.must(0, "pull", ref)
	d, _ := img.Digest()
	if got := strings.TrimSpace(string(r.stdout)); got != ref+"@"+d.String() {
		t.Errorf("msb pull stdout = %q; want %q", got, ref+"@"+d.String())
	}
	if !strings.Contains(string(r.stderr), "Resolving "+ref) || !strings.Contains(string(r.stderr), "Ready "+ref) {
		t.Errorf("msb pull progress (not a terminal) = %q; want one line per event", r.stderr)
	}
	if r := c.must(0, "pull", "-q", ref); len(r.stdout)+len(r.stderr) != 0 {
		t.Errorf("msb pull -q printed %q %q; want nothing", r.stdout, r.stderr)
	}
	if r := c.must(0, "image", "ls"); !strings.Contains(string(r.stdout), ref) {
		t.Errorf("msb image ls = %q; want %s listed", r.stdout, ref)
	}
	c.must(0, "image", "rm", ref)
	c.must(1, "image", "inspect", ref)
	if r := c.must(0, "image", "prune"); !strings.HasPrefix(string(r.stdout), "Freed ") {
		t.Errorf("msb image prune = %q", r.stdout)
	}
}

// debianPythonRootfs returns the cached Debian+python3 tree, building it on
// first use (minutes; needs root and the Debian mirror).
func debianPythonRootfs(t testing.TB) string {
	t.Helper()
	return debianImage(t)
}

// debianImage runs scripts/images/debian-python.sh with args (a variant)
// and returns the tree it prints.
func debianImage(t testing.TB, args ...string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("debootstrap needs root")
	}
	requireTool(t, "debootstrap", "debootstrap")
	out, err := exec.Command(filepath.Join(e2etest.RepoRoot(t), "scripts/images/debian-python.sh"), args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		if e2etest.Required() {
			t.Fatalf("debian-python.sh: %v", err)
		}
		t.Skipf("debian-python.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestImageDebianPython publishes the Debian+python3 image to the local
// registry and pulls it back into a valid EROFS with python3 in it; `msb run
// localhost:PORT/debian-python -- python3 -c 'print(1+1)'` boots this image.
func TestImageDebianPython(t *testing.T) {
	e2etest.Require(t)
	ctx := t.Context()
	dir := debianPythonRootfs(t)
	reg := startRegistry(t)
	img, err := image.ImageFromDir(ctx, dir, image.Config{Cmd: []string{"python3"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := "localhost:" + strings.Split(reg.Host, ":")[1] + "/debian-python:latest"
	start := time.Now()
	if err := openImageStore(t).Push(ctx, ref, img); err != nil {
		t.Fatalf("Push: %v", err)
	}
	t.Logf("push %s: %v", ref, time.Since(start))
	s := openImageStore(t)
	start = time.Now()
	pulled, err := s.Pull(ctx, ref, image.PullIfMissing, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	t.Logf("pull %s: %v (%d bytes)", ref, time.Since(start), pulled.SizeBytes)
	start = time.Now()
	checkRootfs(t, s, pulled, map[string]string{"etc/debian_version": "12", "usr/bin/python3": "\x7fELF"})
	t.Logf("rootfs + fsck: %v", time.Since(start))
}

// BenchmarkImagePullVsSkopeo pulls the busybox image (or, with
// MSB_BENCH_IMAGE=debian-python, the Debian+python3 image) from the local
// registry into an empty cache, next to `skopeo copy` of the same image to a
// directory; ratio = msb / skopeo (below 1 is faster than skopeo).
func BenchmarkImagePullVsSkopeo(b *testing.B) {
	e2etest.Require(b)
	ctx := context.Background()
	reg := startRegistry(b)
	dir := busyboxRootfs(b)
	if os.Getenv("MSB_BENCH_IMAGE") == "debian-python" {
		dir = debianPythonRootfs(b)
	}
	img, err := image.ImageFromDir(ctx, dir, image.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ref := reg.Host + "/bench/img:1"
	if err := openImageStore(b).Push(ctx, ref, img); err != nil {
		b.Fatal(err)
	}
	var msbTime, skopeoTime time.Duration
	for b.Loop() {
		s := openImageStore(b)
		start := time.Now()
		if _, err := s.Pull(ctx, ref, image.PullIfMissing, nil); err != nil {
			b.Fatal(err)
		}
		msbTime += time.Since(start)
		start = time.Now()
		skopeo(b, "copy", "--src-tls-verify=false", "docker://"+ref, "dir:"+filepath.Join(b.TempDir(), "copy"))
		skopeoTime += time.Since(start)
	}
	b.ReportMetric(float64(msbTime.Milliseconds())/float64(b.N), "msb-ms/op")
	b.ReportMetric(float64(skopeoTime.Milliseconds())/float64(b.N), "skopeo-ms/op")
	b.ReportMetric(float64(msbTime)/float64(skopeoTime), "ratio")
}
