package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestApplyPatchesOverlay checks the guest's view: the patched upper over
// an EROFS lower, merged by the kernel's overlayfs.
func TestApplyPatchesOverlay(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("overlay check needs root for loop and overlay mounts")
	}
	src := filepath.Join(t.TempDir(), "lower")
	writeHost(t, filepath.Join(src, "etc/motd"), []byte("lower motd\n"), 0o644)
	writeHost(t, filepath.Join(src, "etc/gone"), []byte("lower gone\n"), 0o644)
	writeHost(t, filepath.Join(src, "etc/keep"), []byte("lower keep\n"), 0o644)
	writeHost(t, filepath.Join(src, "olddir/f"), []byte("f"), 0o644)
	lower := filepath.Join(t.TempDir(), "lower.erofs")
	if err := PackDir(t.Context(), src, lower, PackOptions{Owner: &Owner{0, 0}}); err != nil {
		t.Fatalf("PackDir: %v", err)
	}
	hostFile := filepath.Join(t.TempDir(), "host.txt")
	writeHost(t, hostFile, []byte("from host\n"), 0o644)

	upper := newUpper(t, 64<<20)
	patches := []Patch{
		{Kind: PatchText, Path: "/etc/motd", Data: []byte("patched motd\n"), Mode: 0o600, UID: 1000, GID: 1000},
		{Kind: PatchRemove, Path: "/etc/gone"},
		{Kind: PatchRemove, Path: "/olddir"},
		{Kind: PatchSymlink, Path: "/etc/link", Target: "keep"},
		{Kind: PatchCopyFile, Path: "/srv/host.txt", Source: hostFile},
		{Kind: PatchMkdir, Path: "/data", Mode: 0o700},
	}
	if err := ApplyPatches(t.Context(), upper, patches); err != nil {
		t.Fatalf("ApplyPatches: %v", err)
	}
	e2fsckClean(t, upper)

	lmnt := mountLoop(t, "erofs", lower, "ro")
	umnt := mountLoop(t, "ext4", upper, "rw")
	ov := filepath.Join(t.TempDir(), "ov")
	if err := os.Mkdir(ov, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + lmnt + ",upperdir=" + umnt + "/upper,workdir=" + umnt + "/work"
	if err := unix.Mount("overlay", ov, "overlay", 0, opts); err != nil {
		t.Skipf("mount overlay: %v (no overlayfs here)", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(ov, 0); err != nil && err != unix.EINVAL {
			t.Errorf("unmount overlay: %v", err)
		}
	})

	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(ov, p))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	got := map[string]string{
		"etc/motd":      read("etc/motd"),
		"etc/keep":      read("etc/keep"),
		"etc/link":      read("etc/link"),
		"srv/host.txt":  read("srv/host.txt"),
		"etc/gone":      read("etc/gone"),
		"olddir/f":      read("olddir/f"),
		"etc (listing)": listDir(t, filepath.Join(ov, "etc")),
		"/ (listing)":   listDir(t, ov),
	}
	want := map[string]string{
		"etc/motd":      "patched motd\n",
		"etc/keep":      "lower keep\n",
		"etc/link":      "lower keep\n",
		"srv/host.txt":  "from host\n",
		"etc/gone":      "error: open " + filepath.Join(ov, "etc/gone") + ": no such file or directory",
		"olddir/f":      "error: open " + filepath.Join(ov, "olddir/f") + ": no such file or directory",
		"etc (listing)": "keep link motd",
		"/ (listing)":   "data etc srv",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged view (-want +got):\n%s", diff)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(ov, "etc/motd"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o600 || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("etc/motd mode %o owner %d:%d; want 600 1000:1000", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if err := unix.Stat(filepath.Join(ov, "data"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o7777 != 0o700 {
		t.Errorf("data mode %o; want a 700 directory", st.Mode)
	}
	// The guest writes through the overlay; the image stays clean.
	if err := os.WriteFile(filepath.Join(ov, "etc/gone"), []byte("new\n"), 0o644); err != nil {
		t.Fatalf("write over a whiteout: %v", err)
	}
	if err := unix.Unmount(ov, 0); err != nil {
		t.Fatalf("unmount overlay: %v", err)
	}
	if err := unix.Unmount(umnt, 0); err != nil {
		t.Fatalf("unmount upper: %v", err)
	}
	e2fsckClean(t, upper)
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
