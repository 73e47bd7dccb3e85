package rootfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// capSetuid is a VFS_CAP_REVISION_2 security.capability value granting
// cap_net_bind_service (bit 10) permitted+effective, as setcap writes it.
var capNetBind = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

// buildHostTree creates one of every file kind under dir. Kinds that need
// root (devices, chown, security.* xattrs) are made only as root.
func buildHostTree(t *testing.T, dir string) {
	t.Helper()
	root := os.Getuid() == 0
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(dir, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode))
	}
	write("etc/hostname", []byte("msb\n"), 0o644)
	write("empty", nil, 0o600)
	write("bin/tool", bytes.Repeat([]byte("0123456789abcdef"), 1000), 0o755)
	write("bin/suid", []byte("#!/bin/sh\n"), 0o4755|os.ModeSetuid)
	must(os.Chmod(filepath.Join(dir, "bin/suid"), 0o755|os.ModeSetuid))
	write("big", bytes.Repeat([]byte{0xa5}, 3*4096+17), 0o644)
	must(os.Mkdir(filepath.Join(dir, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	must(os.Symlink("../etc/hostname", filepath.Join(dir, "bin/link")))
	must(os.Symlink("/nowhere/"+strings.Repeat("x", 300), filepath.Join(dir, "dangling")))
	must(os.Link(filepath.Join(dir, "bin/tool"), filepath.Join(dir, "bin/tool2")))
	must(os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755))
	must(os.Link(filepath.Join(dir, "bin/tool"), filepath.Join(dir, "usr/bin/tool3")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	must(unix.Mknod(filepath.Join(dir, "sock"), unix.S_IFSOCK|0o755, 0))
	must(os.Chmod(filepath.Join(dir, "sock"), 0o755))
	must(os.Chmod(filepath.Join(dir, "fifo"), 0o620))
	must(unix.Setxattr(filepath.Join(dir, "etc/hostname"), "user.msb", []byte("v1"), 0))
	must(unix.Setxattr(filepath.Join(dir, "etc"), "user.dir", []byte(""), 0))
	if root {
		must(os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
		must(unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(dir, "dev/big"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))
		must(os.Chmod(filepath.Join(dir, "dev/null"), 0o666))
		must(os.Mkdir(filepath.Join(dir, "root"), 0o700))
		must(os.Chown(filepath.Join(dir, "etc/hostname"), 1000, 1001))
		must(os.Chown(filepath.Join(dir, "root"), 0, 0))
		must(os.Lchown(filepath.Join(dir, "bin/link"), 7, 8))
		must(unix.Setxattr(filepath.Join(dir, "bin/tool"), "security.capability", []byte(capNetBind), 0))
		must(unix.Setxattr(filepath.Join(dir, "etc/hostname"), "trusted.t", []byte("tv"), 0))
	}
}

func TestPackDir(t *testing.T) {
	tests := []struct {
		name  string
		owner *Owner
	}{
		{name: "host ownership"},
		{name: "owner override", owner: &Owner{UID: 0, GID: 0}},
		{name: "owner override nonroot", owner: &Owner{UID: 4242, GID: 77}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			if err := os.Mkdir(src, 0o755); err != nil {
				t.Fatal(err)
			}
			buildHostTree(t, src)
			want := snapshotHost(t, src, true)
			if tt.owner != nil {
				for k, r := range want {
					r.UID, r.GID = tt.owner.UID, tt.owner.GID
					want[k] = r
				}
			}
			img := filepath.Join(t.TempDir(), "root.erofs")
			if err := PackDir(t.Context(), src, img, PackOptions{Owner: tt.owner}); err != nil {
				t.Fatalf("PackDir: %v", err)
			}
			if _, err := os.Stat(img + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("stat .tmp: %v; want not exist", err)
			}
			if os.Getuid() != 0 {
				fsckCheck(t, img)
				t.Skip("comparing extracted ownership and devices needs root (fsck.erofs preserves them only as root)")
			}
			got := fsckExtract(t, img)
			diffTrees(t, got, want)
		})
	}
}

func TestPackDirDeterministic(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	buildHostTree(t, src)
	dir := t.TempDir()
	var images [][]byte
	for i := range 2 {
		img := filepath.Join(dir, "img"+string(rune('a'+i)))
		if err := PackDir(t.Context(), src, img, PackOptions{}); err != nil {
			t.Fatalf("PackDir: %v", err)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		fsckCheck(t, img)
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Errorf("two packs of one tree differ (%d vs %d bytes); want identical images", len(images[0]), len(images[1]))
	}
}

func TestPackDirErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		src    string
		cancel bool
	}{
		{name: "missing", src: filepath.Join(dir, "missing")},
		{name: "not a directory", src: file},
		{name: "cancelled", src: dir, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			dst := filepath.Join(t.TempDir(), "out.erofs")
			if err := PackDir(ctx, tt.src, dst, PackOptions{}); err == nil {
				t.Fatalf("PackDir(%s) = nil; want error", tt.src)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("stat dst: %v; want not exist", err)
			}
		})
	}
}
