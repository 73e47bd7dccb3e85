package supervisor

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
)

// TestHardenProcess re-runs the test binary as a child that hardens itself
// and then probes what it may still do: the confinement cannot be undone,
// so it must not touch the test process.
func TestHardenProcess(t *testing.T) {
	if os.Getenv("MSB_TEST_HARDEN_CHILD") == "1" {
		hardenChild()
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHardenProcess$")
	cmd.Env = append(os.Environ(), "MSB_TEST_HARDEN_CHILD=1", "MSB_TEST_HARDEN_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{"write-inside ok", "exec EPERM"} {
		if !strings.Contains(got, want) {
			t.Errorf("child output lacks %q:\n%s", want, got)
		}
	}
	// Landlock needs a cgo-free binary (AllThreadsSyscall); -race builds
	// use cgo, so the child reports which case it was in.
	switch {
	case strings.Contains(got, "landlock on"):
		if !strings.Contains(got, "read-outside EACCES") {
			t.Errorf("landlock applied but a file outside the allowed dirs was readable:\n%s", got)
		}
	case strings.Contains(got, "landlock off"):
		if !cgoEnabled() && strings.Contains(got, "all threads") {
			t.Errorf("a cgo-free build must apply landlock to all threads:\n%s", got)
		}
		t.Logf("landlock not applied in this build: %s", got)
	default:
		t.Errorf("child did not report landlock state:\n%s", got)
	}
}

func hardenChild() {
	dir := os.Getenv("MSB_TEST_HARDEN_DIR")
	ll, err := hardenProcess([]string{dir}, []string{"/proc"})
	if err != nil {
		println("harden failed:", err.Error())
		os.Exit(1)
	}
	if ll != nil {
		println("landlock off:", ll.Error())
	} else {
		println("landlock on")
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err == nil {
		println("write-inside ok")
	} else {
		println("write-inside", err.Error())
	}
	if _, err := os.ReadFile("/etc/hostname"); errors.Is(err, syscall.EACCES) {
		println("read-outside EACCES")
	} else {
		println("read-outside", errString(err))
	}
	if err := syscall.Exec("/bin/true", []string{"true"}, nil); errors.Is(err, syscall.EPERM) {
		println("exec EPERM")
	} else {
		println("exec", errString(err))
	}
	os.Exit(0)
}

func cgoEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return true
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" {
			return s.Value == "1"
		}
	}
	return true
}

func errString(err error) string {
	if err == nil {
		return "allowed"
	}
	return err.Error()
}
