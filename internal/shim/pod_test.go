package shim

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPodRole(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    role
		wantPod string
		wantErr bool
	}{
		{"no annotations", nil, roleAlone, "", false},
		{"sandbox", map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "p1"}, rolePodSandbox, "p1", false},
		{"container", map[string]string{annotationContainerType: "container", annotationSandboxID: "p1"}, rolePodContainer, "p1", false},
		{"container without pod", map[string]string{annotationContainerType: "container"}, 0, "", true},
		{"pod id with a slash", map[string]string{annotationContainerType: "container", annotationSandboxID: "../p1"}, 0, "", true},
		{"unknown type", map[string]string{annotationContainerType: "init"}, 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, pod, err := podRole(&specs.Spec{Annotations: tc.ann})
			if (err != nil) != tc.wantErr || (err == nil && (got != tc.want || pod != tc.wantPod)) {
				t.Errorf("podRole = %v, %q, %v; want %v, %q, error %v", got, pod, err, tc.want, tc.wantPod, tc.wantErr)
			}
			if g := groupID(&specs.Spec{Annotations: tc.ann}, "c9"); tc.want == rolePodContainer && g != tc.wantPod || tc.want != rolePodContainer && g != "c9" {
				t.Errorf("groupID = %q", g)
			}
		})
	}
}

func TestValidTaskID(t *testing.T) {
	for id, want := range map[string]bool{
		"c1": true, "abc.def-1_2": true, "0123456789abcdef": true,
		"": false, ".": false, "..": false, "a/b": false, "-a": false, "a..b": false, "a\x00": false,
	} {
		if got := validTaskID(id); got != want {
			t.Errorf("validTaskID(%q) = %v; want %v", id, got, want)
		}
	}
}

// writeBundle makes a bundle whose rootfs holds a marker file.
func writeBundle(t *testing.T, args string, ann map[string]string) string {
	t.Helper()
	b := t.TempDir()
	if err := os.MkdirAll(filepath.Join(b, "rootfs", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "rootfs", "etc", "marker"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := specs.Spec{Version: "1.0.2", Process: &specs.Process{Args: []string{args}, Cwd: "/"},
		Root: &specs.Root{Path: "rootfs"}, Annotations: ann}
	writeJSON(t, filepath.Join(b, "config.json"), spec)
	return b
}

// TestPodWithoutBoot drives a pod through the paths that need no VM: the
// sandbox and a container created, the container's root bound into the
// pod's share, a start refused while the pod has no VM, and deletes that
// unbind without ever removing a file of a container's root.
func TestPodWithoutBoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding a container's root into the pod share needs root")
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	home := t.TempDir()
	s := newService(t.Context(), "pod1", home, log, newPublisher("", "k8s.io", log), func() {})
	t.Cleanup(s.close)
	sandbox := writeBundle(t, "/pause", map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "pod1"})
	ctr := writeBundle(t, "sh", map[string]string{annotationContainerType: "container", annotationSandboxID: "pod1"})
	other := writeBundle(t, "sh", map[string]string{annotationContainerType: "container", annotationSandboxID: "pod2"})

	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: ctr}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Fatalf("container before its pod's sandbox: %v; want InvalidArgument", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "pod1", Bundle: sandbox}); err != nil {
		t.Fatalf("Create sandbox: %v", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c2", Bundle: other}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Fatalf("container of another pod: %v; want InvalidArgument", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: ctr}); err != nil {
		t.Fatalf("Create container: %v", err)
	}
	shared := filepath.Join(podShareDir(home), "c1", "etc", "marker")
	if b, err := os.ReadFile(shared); err != nil || string(b) != "keep me" {
		t.Fatalf("container root in the pod share: %q, %v", b, err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c1"}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("Start of a container without the pod's VM: %v; want FailedPrecondition", err)
	}
	if st, err := s.State(ctx, &taskapi.StateRequest{ID: "c1"}); err != nil || st.Status != task.Status_CREATED || st.Bundle != ctr {
		t.Fatalf("State c1 = %v, %v", st, err)
	}
	// A container's delete unbinds its root and leaves the pod.
	if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); err != nil {
		t.Fatalf("Delete c1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(podShareDir(home), "c1")); !os.IsNotExist(err) {
		t.Errorf("c1's mount point is still in the share: %v", err)
	}
	if _, err := s.State(ctx, &taskapi.StateRequest{ID: "pod1"}); err != nil {
		t.Errorf("the sandbox after its container's delete: %v", err)
	}
	// A second container, left bound when the shim closes: close unbinds
	// it without deleting its files.
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c3", Bundle: ctr}); err != nil {
		t.Fatalf("Create c3: %v", err)
	}
	s.close()
	if _, err := os.Stat(podShareDir(home)); !os.IsNotExist(err) {
		t.Errorf("pod share left after close: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(ctr, "rootfs", "etc", "marker")); err != nil || string(b) != "keep me" {
		t.Errorf("the container's root lost its files: %q, %v", b, err)
	}
}

// TestRemoveStateKeepsBoundRoots: with a root still bound in the pod share
// (its unmount failing), the state is left in place rather than removed
// through the mount.
func TestRemoveStateKeepsBoundRoots(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind")
	}
	dir, root := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := makePodShare(dir); err != nil {
		t.Fatal(err)
	}
	if err := shareRoot(dir, "c1", root); err != nil {
		t.Fatal(err)
	}
	// A second bind stacked on the first: one lazy unmount leaves the
	// other, so the rmdir fails and removeState must stop.
	if err := bindMount(root, filepath.Join(podShareDir(dir), "c1")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unshareRoot(dir, "c1"); _ = unshareRoot(dir, "c1") })
	if err := removeState(dir); err == nil {
		t.Fatal("removeState succeeded with a root still bound")
	}
	if _, err := os.Stat(filepath.Join(root, "f")); err != nil {
		t.Fatalf("a file of the bound root was removed: %v", err)
	}
}

func writeJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
