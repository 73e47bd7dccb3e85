package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
)

func TestRootfsPath(t *testing.T) {
	tests := []struct {
		bundle, root, want, wantErr string
	}{
		{"/b", "rootfs", "/b/rootfs", ""},
		{"/b", "/abs/root/", "/abs/root", ""},
		{"/b", "", "", "no root.path"},
	}
	for _, tc := range tests {
		got, err := rootfsPath(tc.bundle, tc.root)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("rootfsPath(%q, %q) error = %v; want %q", tc.bundle, tc.root, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("rootfsPath(%q, %q) = %q, %v; want %q", tc.bundle, tc.root, got, err, tc.want)
		}
	}
}

// TestMountRootfsErrors covers what fails before anything is mounted, so it
// needs no privileges.
func TestMountRootfsErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		target  string
		mounts  []*types.Mount
		wantErr string
	}{
		{"no mounts, no rootfs", filepath.Join(dir, "missing"), nil, "no mounts given"},
		{"no mounts, rootfs is a file", file, nil, "not a directory"},
		{"mount without type", filepath.Join(dir, "r1"), []*types.Mount{{Source: "/x"}}, "rootfs mount 0: no type"},
		{"nil mount", filepath.Join(dir, "r2"), []*types.Mount{nil}, "rootfs mount 0: no type"},
		{"second mount without source", filepath.Join(dir, "r3"),
			[]*types.Mount{{Type: "bind", Source: "/x", Options: []string{"rbind"}}, {Type: "overlay"}}, "rootfs mount 1 (overlay): no source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mounted, err := mountRootfs(tc.target, tc.mounts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("mountRootfs() error = %v; want one containing %q", err, tc.wantErr)
			}
			if mounted {
				t.Errorf("mountRootfs() reported a mount on failure")
			}
		})
	}
}

func TestMountRootfsExistingDir(t *testing.T) {
	dir := t.TempDir()
	mounted, err := mountRootfs(dir, nil)
	if err != nil || mounted {
		t.Fatalf("mountRootfs(existing dir, no mounts) = %v, %v; want false, nil", mounted, err)
	}
}

func TestToMounts(t *testing.T) {
	in := []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u", "workdir=/w"}}}
	got, err := toMounts(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Type != "overlay" || got[0].Source != "overlay" || len(got[0].Options) != 3 {
		t.Errorf("toMounts() = %+v; want the overlay mount unchanged", got)
	}
}
