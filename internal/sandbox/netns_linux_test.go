package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckNetNS(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, wantErr string
	}{
		{"/proc/self/ns/net", ""},
		{"/proc/self/ns/uts", "not a network one"},
		{file, "not a namespace"},
		{"/nonexistent/netns", "no such file"},
		{"run/netns/x", "absolute path"},
	}
	for _, tc := range tests {
		err := checkNetNS(tc.path)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkNetNS(%q) = %v; want error containing %q", tc.path, err, tc.wantErr)
		}
	}
}

// TestStartInNetNS: the child starts in the namespace given, and the
// starting thread comes back to its own (a later plain start is in ours).
func TestStartInNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	ours, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// A thread of its own moves into a new namespace and stays there (it
	// is never unlocked, so the runtime discards it) until the test ends.
	paths, errs, done := make(chan string), make(chan error, 1), make(chan struct{})
	defer close(done)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errs <- err
			return
		}
		paths <- fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		<-done
	}()
	var path string
	select {
	case err := <-errs:
		t.Fatalf("unshare: %v", err)
	case path = <-paths:
	}
	want, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	if want == ours {
		t.Fatalf("the new namespace %s is ours", want)
	}
	childNS := func(start func(*exec.Cmd) error) string {
		t.Helper()
		cmd := exec.Command("readlink", "/proc/self/ns/net")
		var out strings.Builder
		cmd.Stdout = &out
		if err := start(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	for range 20 { // again and again, on whichever threads the runtime picks
		if got := childNS(func(c *exec.Cmd) error { return startInNetNS(c, path) }); got != want {
			t.Fatalf("child started in %s; want %s", got, want)
		}
		if got := childNS((*exec.Cmd).Start); got != ours {
			t.Fatalf("a plain start after startInNetNS ran in %s; want ours, %s", got, ours)
		}
	}
}
