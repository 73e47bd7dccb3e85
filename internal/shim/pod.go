package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Pods. The CRI runs a Kubernetes pod as a sandbox (pause) container and
// then the pod's containers, each started through the runtime's `shim
// start`; the annotations below tell them apart and name the pod, so that
// every container of a pod reaches the one shim serving it (see start).
// The sandbox container boots the VM with the pod's share: a directory of
// the shim's state (podShareDir) served over virtio-fs with its submounts
// (msb.WithVolumeSubmounts) at guestPodDir. Each container's root, mounted
// from the snapshotter as runc's would be, is bound into that directory
// when the container is created; its processes run in the guest chrooted
// there (msb.WithExecRoot). Nothing is ever removed recursively from the
// share: a container's root is unmounted and its empty mount point rmdir'd.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	containerTypeContainer  = "container"

	// podShareName is the pod's share inside the shim's state directory.
	podShareName = "pod"
	// guestPodDir is where the guest mounts the pod's share.
	guestPodDir = "/run/msb-pod"
)

// podRole reads a container's place in a pod from its spec's annotations:
// no annotation is a container on its own.
func podRole(s *specs.Spec) (role, string, error) {
	typ, ok := s.Annotations[annotationContainerType]
	if !ok {
		return roleAlone, "", nil
	}
	id := s.Annotations[annotationSandboxID]
	switch typ {
	case containerTypeSandbox:
		return rolePodSandbox, id, nil
	case containerTypeContainer:
		if !validTaskID(id) {
			return 0, "", fmt.Errorf("annotation %s: %q is not a sandbox id", annotationSandboxID, id)
		}
		return rolePodContainer, id, nil
	}
	return 0, "", fmt.Errorf("annotation %s: unknown container type %q", annotationContainerType, typ)
}

// groupID is the task whose shim serves the container of spec: its pod's
// sandbox for a pod container, else the container itself.
func groupID(s *specs.Spec, id string) string {
	if rl, pod, err := podRole(s); err == nil && rl == rolePodContainer {
		return pod
	}
	return id
}

// idPattern is containerd's identifier grammar (pkg/identifiers): what it
// accepts is safe as one path component.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// validTaskID reports whether id is a containerd identifier.
func validTaskID(id string) bool { return len(id) <= 76 && idPattern.MatchString(id) }

func podShareDir(home string) string { return filepath.Join(home, podShareName) }

// guestRoot is the guest path of a pod container's root.
func guestRoot(id string) string { return guestPodDir + "/" + id }

// makePodShare creates the pod's (empty) share.
func makePodShare(home string) error {
	if err := os.Mkdir(podShareDir(home), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pod share: %w", err)
	}
	return nil
}

// shareRoot binds a container's root into the pod's share.
func shareRoot(home, id, rootfs string) error {
	if !validTaskID(id) {
		return fmt.Errorf("share root: %q is not a container id", id)
	}
	dir := filepath.Join(podShareDir(home), id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("share root: %w", err)
	}
	if err := bindMount(rootfs, dir); err != nil {
		_ = os.Remove(dir)
		return fmt.Errorf("share root %s: %w", id, err)
	}
	return nil
}

// unshareRoot undoes shareRoot: a lazy unmount (the guest may still hold
// files of the root open through the share), then rmdir of the mount point,
// which fails rather than delete anything if the root is still there.
func unshareRoot(home, id string) error {
	dir := filepath.Join(podShareDir(home), id)
	if err := unmountBind(dir); err != nil {
		return fmt.Errorf("unshare root %s: %w", id, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unshare root %s: %w", id, err)
	}
	return nil
}

// removePodShare unshares every root left in the pod's share and removes
// it, never recursively.
func removePodShare(home string) error {
	ents, err := os.ReadDir(podShareDir(home))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove pod share: %w", err)
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, unshareRoot(home, e.Name()))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(podShareDir(home)); err != nil {
		return fmt.Errorf("remove pod share: %w", err)
	}
	return nil
}

// removeState removes a shim's state directory, the pod's share first so
// that the recursive removal never meets a container's root.
func removeState(dir string) error {
	if err := removePodShare(dir); err != nil {
		return fmt.Errorf("remove shim state: %w (left in place)", err)
	}
	return os.RemoveAll(dir)
}
