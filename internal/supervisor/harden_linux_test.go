package supervisor

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/msb-go/msb/internal/confine"
)

// TestHardenProcess re-runs the test binary as a child that confines itself
// as the sandbox process does (Landlock, then seccomp) and then probes what
// it may still do: the confinement cannot be undone, so it must not touch
// the test process.
func TestHardenProcess(t *testing.T) {
	if os.Getenv("MSB_TEST_HARDEN_CHILD") == "1" {
		hardenChild()
		return
	}
	dir := t.TempDir()
	// Another sandbox's agent.sock, listening, and a secret beside it.
	other := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	secret := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(secret, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHardenProcess$")
	cmd.Env = append(os.Environ(), "MSB_TEST_HARDEN_CHILD=1", "MSB_TEST_HARDEN_DIR="+dir,
		"MSB_TEST_HARDEN_SOCK="+other, "MSB_TEST_HARDEN_SECRET="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"write-inside ok", "exec EPERM", "unix-socket EPERM", "inet-socket ok",
		"kill-init EPERM", "fork EPERM", "ioctl EPERM",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("child output lacks %q:\n%s", want, got)
		}
	}
	// Landlock needs a cgo-free binary (AllThreadsSyscall); -race builds
	// use cgo, so the child reports which case it was in.
	switch {
	case strings.Contains(got, "landlock on"):
		for _, want := range []string{"read-outside EACCES", "read-secret EACCES"} {
			if !strings.Contains(got, want) {
				t.Errorf("landlock applied but child output lacks %q:\n%s", want, got)
			}
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
	if err := confine.Landlock(fileRules(dir, dir, nil, nil, "")); err != nil {
		println("landlock off:", err.Error())
	} else {
		println("landlock on")
	}
	if err := confine.Seccomp(syscallPolicy(0)); err != nil {
		println("seccomp failed:", err.Error())
		os.Exit(1)
	}
	probe := func(name string, err error) {
		switch {
		case err == nil:
			println(name, "ok")
		case errors.Is(err, syscall.EPERM):
			println(name, "EPERM")
		case errors.Is(err, syscall.EACCES):
			println(name, "EACCES")
		default:
			println(name, err.Error())
		}
	}
	probe("write-inside", os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600))
	_, err := os.ReadFile("/etc/hostname")
	probe("read-outside", err)
	_, err = os.ReadFile(os.Getenv("MSB_TEST_HARDEN_SECRET"))
	probe("read-secret", err)
	probe("exec", syscall.Exec("/bin/true", []string{"true"}, nil))
	// A compromised sandbox process must not reach another sandbox's relay.
	c, err := net.Dial("unix", os.Getenv("MSB_TEST_HARDEN_SOCK"))
	if c != nil {
		c.Close()
	}
	probe("unix-socket", err)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err == nil {
		syscall.Close(fd)
	}
	probe("inet-socket", err)
	probe("kill-init", syscall.Kill(1, 0))
	_, _, e := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
	if e == 0 {
		os.Exit(0) // the forked child: it should not exist
	}
	probe("fork", e)
	_, _, e = syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGWINSZ, 0)
	probe("ioctl", e)
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
