package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// mountLoop mounts img at a new directory with mount(8) and returns it,
// unmounting at cleanup unless the test did so first. Tests using it need root and loop devices; where
// the mount cannot be made they skip, naming the reason.
func mountLoop(t *testing.T, fstype, img, opts string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("kernel mount checks need root")
	}
	bin := requireTool(t, "mount", "mount")
	dir := filepath.Join(t.TempDir(), "mnt-"+fstype)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", fstype, "-o", "loop,"+opts, img, dir).CombinedOutput()
	if err != nil {
		t.Skipf("mount -t %s -o loop %s: %v: %s (no loop devices or %s support here)", fstype, img, err, out, fstype)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil && err != unix.EINVAL {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestKernelReadsImages checks images with the real consumer, the Linux
// EROFS driver: hardlinks must share one inode, xattrs and devices must read
// back, and an overlay over an upper from CreateUpper must take writes that
// e2fsck then finds clean.
func TestKernelReadsImages(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("kernel mount checks need root")
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	buildHostTree(t, src)
	lower := filepath.Join(t.TempDir(), "lower.erofs")
	if err := PackDir(t.Context(), src, lower, PackOptions{}); err != nil {
		t.Fatalf("PackDir: %v", err)
	}
	fsckCheck(t, lower)
	mnt := mountLoop(t, "erofs", lower, "ro")
	diffTrees(t, snapshotHost(t, mnt, true), snapshotHost(t, src, true))

	for _, tc := range layerCases {
		if tc.wantErr != nil {
			continue
		}
		t.Run("layers/"+tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "layers.erofs")
			if err := BuildFromLayers(t.Context(), layerReaders(t, tc.layers), img); err != nil {
				t.Fatalf("BuildFromLayers: %v", err)
			}
			fsckCheck(t, img)
			got := snapshotHost(t, mountLoop(t, "erofs", img, "ro"), true)
			diffTrees(t, got, tc.want)
		})
	}

	t.Run("overlay on upper", func(t *testing.T) {
		upper := filepath.Join(t.TempDir(), "upper.ext4")
		if err := CreateUpper(t.Context(), upper, 64<<20); err != nil {
			t.Fatalf("CreateUpper: %v", err)
		}
		u := mountLoop(t, "ext4", upper, "rw")
		ov := filepath.Join(t.TempDir(), "ov")
		if err := os.Mkdir(ov, 0o755); err != nil {
			t.Fatal(err)
		}
		opts := "lowerdir=" + mnt + ",upperdir=" + u + "/upper,workdir=" + u + "/work"
		if err := unix.Mount("overlay", ov, "overlay", 0, opts); err != nil {
			t.Skipf("mount overlay: %v", err)
		}
		write := func() error {
			defer func() {
				if err := unix.Unmount(ov, 0); err != nil {
					t.Errorf("unmount overlay: %v", err)
				}
			}()
			if err := os.WriteFile(filepath.Join(ov, "etc/hostname"), []byte("changed\n"), 0o644); err != nil {
				return err
			}
			return os.Remove(filepath.Join(ov, "bin/tool2"))
		}
		if err := write(); err != nil {
			t.Fatalf("write through overlay: %v", err)
		}
		b, err := os.ReadFile(filepath.Join(u, "upper/etc/hostname"))
		if err != nil || string(b) != "changed\n" {
			t.Errorf("upper etc/hostname = %q, %v; want %q", b, err, "changed\n")
		}
		if err := unix.Unmount(u, 0); err != nil {
			t.Fatalf("unmount upper: %v", err)
		}
		e2fsckClean(t, upper)
	})
}
