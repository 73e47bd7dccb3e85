package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
)

// rootfsPath is where the container's root is: the spec's root.path,
// relative to the bundle unless absolute ("rootfs" as containerd writes it).
func rootfsPath(bundle, specRoot string) (string, error) {
	if specRoot == "" {
		return "", errors.New("spec has no root.path")
	}
	if filepath.IsAbs(specRoot) {
		return filepath.Clean(specRoot), nil
	}
	return filepath.Join(bundle, specRoot), nil
}

// toMounts validates containerd's rootfs mounts and converts them for
// containerd's mount package: a mount without a type or source cannot be
// performed, and saying so here names the culprit.
func toMounts(in []*types.Mount) ([]mount.Mount, error) {
	out := make([]mount.Mount, 0, len(in))
	for i, m := range in {
		if m == nil || m.Type == "" {
			return nil, fmt.Errorf("rootfs mount %d: no type", i)
		}
		if m.Source == "" {
			return nil, fmt.Errorf("rootfs mount %d (%s): no source", i, m.Type)
		}
		out = append(out, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out, nil
}

// mountRootfs mounts the snapshotter's mounts on dir, as containerd's runc
// shim does, and reports whether it mounted anything (and so must unmount).
// Without mounts, dir must already hold the root (a bundle made by hand).
func mountRootfs(dir string, in []*types.Mount) (bool, error) {
	ms, err := toMounts(in)
	if err != nil {
		return false, err
	}
	if len(ms) == 0 {
		st, err := os.Stat(dir)
		if err != nil {
			return false, fmt.Errorf("rootfs: no mounts given and %w", err)
		}
		if !st.IsDir() {
			return false, fmt.Errorf("rootfs %s: not a directory", dir)
		}
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return false, fmt.Errorf("rootfs: %w", err)
	}
	if err := mount.All(ms, dir); err != nil {
		_ = mount.UnmountAll(dir, 0)
		return false, fmt.Errorf("mount rootfs: %w", err)
	}
	return true, nil
}

// unmountRootfs undoes mountRootfs; MNT_DETACH so a busy mount (a leftover
// reader) does not keep the container from being deleted.
func unmountRootfs(dir string) error {
	if err := mount.UnmountAll(dir, unmountFlags); err != nil {
		return fmt.Errorf("unmount rootfs: %w", err)
	}
	return nil
}
