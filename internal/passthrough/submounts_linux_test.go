package passthrough

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs holding file "f" at dir, or skips without the
// privilege to mount.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		if err == unix.EPERM {
			t.Skip("mounting a tmpfs needs CAP_SYS_ADMIN")
		}
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("in the submount\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink out of the share inside the submount: still not followed.
	if err := os.Symlink("/etc", filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
}

// TestSubmounts: a mount point below the root is not entered (EXDEV)
// unless Options.Submounts, which also serves mounts made after New; names
// inside a submount resolve beneath it as anywhere else.
func TestSubmounts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		submounts bool
		want      syscall.Errno
	}{
		{"default", false, syscall.EXDEV},
		{"submounts", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Options{Submounts: tc.submounts})
			mnt := filepath.Join(r.share, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			mountTmpfs(t, mnt) // after New: a container root mounted into a live pod share
			node, e := r.lookup(1, "mnt")
			if e != tc.want {
				t.Fatalf("LOOKUP mnt = %v; want %v", e, tc.want)
			}
			if e != 0 {
				return
			}
			f, e := r.lookup(node, "f")
			if e != 0 {
				t.Fatalf("LOOKUP mnt/f = %v", e)
			}
			fh, e := r.open(f, uint32(os.O_RDONLY))
			if e != 0 {
				t.Fatalf("OPEN mnt/f = %v", e)
			}
			got, e := r.read(fh, 0, 100)
			if e != 0 || string(got) != "in the submount\n" {
				t.Fatalf("READ mnt/f = %q, %v", got, e)
			}
			r.release(fh)
			// The symlink is an entry like any other; entering it is not.
			out, e := r.lookup(node, "out")
			if e != 0 {
				t.Fatalf("LOOKUP mnt/out = %v", e)
			}
			if _, e := r.lookup(out, "passwd"); e == 0 {
				t.Fatal("LOOKUP through a symlink inside a submount succeeded")
			}
			if _, e := r.lookup(node, ".."); e == 0 {
				t.Fatal(`LOOKUP ".." from a submount's root succeeded`)
			}
			// Written files land in the submount, not in the directory below it.
			_, wfh, e := r.create(node, "new", uint32(os.O_WRONLY), 0o644)
			if e != 0 {
				t.Fatalf("CREATE mnt/new = %v", e)
			}
			r.release(wfh)
			if _, err := os.Stat(filepath.Join(mnt, "new")); err != nil {
				t.Fatalf("the created file is not in the submount: %v", err)
			}
		})
	}
}

func TestSubmountsWithQuotaRefused(t *testing.T) {
	if _, err := New(t.TempDir(), Options{Submounts: true, QuotaBytes: 1 << 20}); err == nil {
		t.Fatal("New accepted Submounts with a quota")
	}
}
