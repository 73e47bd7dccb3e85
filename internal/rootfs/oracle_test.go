package rootfs

import (
	"os"
	"os/exec"
	"testing"
)

// requireTool returns the path of an oracle binary. A missing oracle fails the
// test when MSB_REQUIRE_E2E=1 and skips it otherwise, naming the package.
func requireTool(tb testing.TB, name, pkg string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(dir + "/" + name); err == nil {
			return dir + "/" + name
		}
	}
	if os.Getenv("MSB_REQUIRE_E2E") == "1" {
		tb.Fatalf("%s not found; install the Debian package %s", name, pkg)
	}
	tb.Skipf("%s not found; install the Debian package %s (MSB_REQUIRE_E2E=1 makes this fatal)", name, pkg)
	return ""
}

// e2fsckClean runs e2fsck -fn on img and fails the test on any finding.
func e2fsckClean(tb testing.TB, img string) {
	tb.Helper()
	bin := requireTool(tb, "e2fsck", "e2fsprogs")
	out, err := exec.Command(bin, "-fn", img).CombinedOutput()
	if err != nil {
		tb.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// debugfs runs one debugfs request against img and returns its output.
func debugfs(tb testing.TB, img, req string) string {
	tb.Helper()
	bin := requireTool(tb, "debugfs", "e2fsprogs")
	out, err := exec.Command(bin, "-R", req, img).CombinedOutput()
	if err != nil {
		tb.Fatalf("debugfs -R %q %s: %v\n%s", req, img, err, out)
	}
	return string(out)
}
