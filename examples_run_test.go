package msb_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/e2etest"
)

// examplesEnv turns TestExamplesRun on. The unit tier runs this package,
// so MSB_REQUIRE_E2E=1 alone does not: make test and test-e2e set both.
const examplesEnv = "MSB_RUN_EXAMPLES"

// exampleImage is the image reference the examples use. The test imports
// the busybox demo tree under it, so nothing is pulled.
const exampleImage = "alpine:3.20"

// TestExamplesRun runs every Example function against real sandboxes and
// checks what each printed: the examples have no // Output: (the unit tier
// has no guest), so this is what keeps them working. It sets up what they
// assume: MSB_HOME in a temporary directory, ./rootfs (the busybox demo
// tree), the image alpine:3.20 (that tree again), and a running sandbox
// "dev" made from it, shared by the examples; the snapshot example stops
// it, so it runs last.
func TestExamplesRun(t *testing.T) {
	if os.Getenv(examplesEnv) != "1" {
		t.Skipf("set %s=1 to run the examples against a real sandbox (make test-e2e does)", examplesEnv)
	}
	// Asked for by name: a missing kernel or QEMU fails rather than skips.
	t.Setenv("MSB_REQUIRE_E2E", "1")
	env := e2etest.Require(t)
	start := time.Now()

	bin := t.TempDir()
	for pkg, name := range map[string]string{"./cmd/msb": "msb", "./cmd/agentd": "agentd"} {
		b, err := os.ReadFile(e2etest.Build(t, pkg))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	msbBin := filepath.Join(bin, "msb")
	out, err := exec.Command(filepath.Join(e2etest.RepoRoot(t), "scripts/images/busybox-rootfs.sh")).Output()
	if err != nil {
		t.Fatalf("busybox-rootfs.sh: %v", err)
	}
	rootfs := strings.TrimSpace(string(out))

	t.Setenv("MSB_HOME", filepath.Join(t.TempDir(), "home"))
	t.Setenv("MSB_PATH", msbBin)
	t.Setenv("MSB_KERNEL", env.Kernel)
	work := t.TempDir()
	if err := os.Symlink(rootfs, filepath.Join(work, "rootfs")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	if out, err := exec.Command(msbBin, "image", "import", rootfs, exampleImage).CombinedOutput(); err != nil {
		t.Fatalf("msb image import: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		// Leave nothing running, whatever an example did.
		list, _ := msb.List(context.Background())
		for _, in := range list {
			msb.Remove(context.Background(), in.Name, true)
		}
	})
	dev, err := msb.Create(ctx, "dev", msb.WithImage(exampleImage), msb.WithMemory(256))
	if err != nil {
		t.Fatalf("create dev: %v", err)
	}
	defer dev.Close()
	// Something for ExampleSandbox_Logs to find.
	if res, err := dev.Shell(ctx, "echo 'error: disk full' >&2"); err != nil || res.ExitCode != 0 {
		t.Fatalf("dev: %v %+v", err, res)
	}
	t.Logf("setup took %v", time.Since(start).Round(time.Millisecond))

	for _, ex := range []struct {
		name string
		fn   func()
		want string // a regular expression the whole output must match
	}{
		{"ExampleCreate", ExampleCreate, `^hello\n exit=3\n$`},
		{"ExampleSandbox_Shell", ExampleSandbox_Shell, `^42\n$`},
		{"ExampleSandbox_ExecStream", ExampleSandbox_ExecStream, `^1000 0 <nil>\n$`},
		{"ExampleSandbox_Attach", ExampleSandbox_Attach, `^stdin is not a terminal: use Exec or Shell\n$`},
		{"ExampleSandbox_Logs", ExampleSandbox_Logs, `^\S+ \[stderr\] error: disk full\n$`},
		{"ExampleSandbox_MetricsStream", ExampleSandbox_MetricsStream, `^(cpu \d+\.\d% mem \d+ MiB\n){3}$`},
		{"ExampleImages", ExampleImages,
			`^docker\.io/library/alpine:3\.20 linux/\w+ \d+\nsha256:[0-9a-f]{64} \[.*\]\na sandbox uses it\nfreed \d+ bytes\n$`},
		{"ExampleSandbox_Snapshot", ExampleSandbox_Snapshot,
			`^dev-configured of (docker\.io/library/)?alpine:3\.20 labels map\[team:ml\]\nthe copy says configured\nexported\n$`},
	} {
		t.Run(ex.name, func(t *testing.T) {
			began := time.Now()
			got := captureStdout(t, ex.fn)
			t.Logf("%s took %v", ex.name, time.Since(began).Round(time.Millisecond))
			if !regexp.MustCompile(ex.want).MatchString(got) {
				t.Errorf("%s printed %q; want a match for %q", ex.name, got, ex.want)
			}
		})
	}
	if st, err := os.Stat(filepath.Join(work, "dev-configured.tar.zst")); err != nil || st.Size() == 0 {
		t.Errorf("ExampleSandbox_Snapshot's export: %v", err)
	}
	t.Logf("all examples took %v", time.Since(start).Round(time.Millisecond))
}

// captureStdout runs fn with os.Stdout a pipe and os.Stdin /dev/null (an
// example must not find the terminal go test may have), and returns what
// it printed.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	stdout, stdin := os.Stdout, os.Stdin
	os.Stdout, os.Stdin = w, null
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() {
		os.Stdout, os.Stdin = stdout, stdin
		w.Close()
	}()
	fn()
	os.Stdout, os.Stdin = stdout, stdin
	w.Close()
	return <-done
}
