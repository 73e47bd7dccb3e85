package rootfs

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBusyboxRootfsScript runs scripts/images/busybox-rootfs.sh into a
// private cache, checks the layout it promises and that a second run reuses
// the cached tree, then packs the tree and checks the image with fsck.erofs.
func TestBusyboxRootfsScript(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		if os.Getenv("MSB_REQUIRE_E2E") == "1" {
			t.Fatal("/bin/busybox missing; install the Debian package busybox-static (scripts/setup.sh)")
		}
		t.Skip("/bin/busybox missing; install the Debian package busybox-static (scripts/setup.sh)")
	}
	bash := requireTool(t, "bash", "bash")
	script, err := filepath.Abs("../../scripts/images/busybox-rootfs.sh")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	run := func() string {
		t.Helper()
		cmd := exec.Command(bash, script)
		cmd.Env = append(os.Environ(), "MSB_CACHE="+cache)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		return strings.TrimSpace(string(out))
	}
	dir := run()
	if again := run(); again != dir {
		t.Errorf("second run printed %q; want the cached %q", again, dir)
	}
	if !strings.HasPrefix(dir, filepath.Join(cache, "rootfs", "busybox")+"/") {
		t.Fatalf("script printed %q; want a directory under %s/rootfs/busybox/", dir, cache)
	}
	ents, err := os.ReadDir(filepath.Dir(dir))
	if err != nil || len(ents) != 1 {
		t.Errorf("cache holds %d entries (%v); want only the finished tree", len(ents), err)
	}

	mode := func(rel string) fs.FileMode {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("lstat %s: %v", rel, err)
		}
		return fi.Mode()
	}
	wantModes := map[string]fs.FileMode{
		"bin/busybox": 0o755,
		"tmp":         fs.ModeDir | fs.ModeSticky | 0o777,
		"root":        fs.ModeDir | 0o700,
		"dev":         fs.ModeDir | 0o755,
		"proc":        fs.ModeDir | 0o755,
		"sys":         fs.ModeDir | 0o755,
		"run":         fs.ModeDir | 0o755,
		"etc/passwd":  0o644,
		"etc/group":   0o644,
	}
	for rel, want := range wantModes {
		if got := mode(rel); got != want {
			t.Errorf("mode of %s = %v; want %v", rel, got, want)
		}
	}
	for _, empty := range []string{"dev", "proc", "sys", "run"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, empty)); len(ents) != 0 {
			t.Errorf("%s has %d entries; want none", empty, len(ents))
		}
	}
	for _, applet := range []string{"bin/sh", "bin/ls", "sbin/init"} {
		if target, err := os.Readlink(filepath.Join(dir, applet)); err != nil || target != "/bin/busybox" {
			t.Errorf("readlink %s = %q, %v; want /bin/busybox", applet, target, err)
		}
	}
	for file, lines := range map[string][]string{
		"etc/passwd": {"root:x:0:0:root:/root:/bin/sh", "nobody:x:65534:65534:"},
		"etc/group":  {"root:x:0:", "nogroup:x:65534:"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if !strings.Contains(string(b), "\n"+l) && !strings.HasPrefix(string(b), l) {
				t.Errorf("%s = %q; want a line starting %q", file, b, l)
			}
		}
	}

	img := filepath.Join(t.TempDir(), "busybox.erofs")
	if err := PackDir(t.Context(), dir, img, PackOptions{Owner: &Owner{}}); err != nil {
		t.Fatalf("PackDir: %v", err)
	}
	if os.Getuid() != 0 {
		fsckCheck(t, img) // extraction compares ownership, which needs root
		return
	}
	want := snapshotHost(t, dir, true)
	for k, r := range want {
		r.UID, r.GID = 0, 0
		want[k] = r
	}
	diffTrees(t, fsckExtract(t, img), want)
}
