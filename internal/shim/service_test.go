package shim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/types/known/anypb"
)

// newTestService is a service over a hand-made bundle (rootfs already in
// place, so no mounts) whose events go nowhere.
func newTestService(t *testing.T) (*service, string, *int) {
	t.Helper()
	bundle := t.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := `{"ociVersion":"1.0.2","process":{"args":["sleep","1000"],"cwd":"/","env":["PATH=/bin"]},"root":{"path":"rootfs"}}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	shutdowns := new(int)
	s := newService(t.Context(), "c1", t.TempDir(), log, newPublisher("", "default", log), func() { *shutdowns++ })
	return s, bundle, shutdowns
}

// TestServiceWithoutBoot drives the task API through the paths that need
// no VM: create, state, kill before start, wait, delete, shutdown.
func TestServiceWithoutBoot(t *testing.T) {
	ctx := context.Background()
	s, bundle, shutdowns := newTestService(t)
	if _, err := s.State(ctx, &taskapi.StateRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("State before Create: %v; want NotFound", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle, Stdout: "/nonexistent/out"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle}); !errdefs.IsAlreadyExists(errgrpc.ToNative(err)) {
		t.Fatalf("second Create: %v; want AlreadyExists", err)
	}
	st, err := s.State(ctx, &taskapi.StateRequest{ID: "c1"})
	if err != nil || st.Status != task.Status_CREATED || st.Bundle != bundle || st.Stdout != "/nonexistent/out" {
		t.Fatalf("State after Create = %v, %v; want CREATED with the bundle and stdout", st, err)
	}
	if _, err := s.State(ctx, &taskapi.StateRequest{ID: "other"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("State of another id: %v; want NotFound", err)
	}
	if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1", ExecID: "e1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("Delete of an exec: %v; want NotFound", err)
	}
	// Shutdown without Now keeps a shim whose task is alive.
	if _, err := s.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "c1"}); err != nil || *shutdowns != 0 {
		t.Fatalf("Shutdown with a live task: %v, %d shutdowns; want none", err, *shutdowns)
	}
	// Exec needs a running task; a terminal needs a started process.
	spec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: []byte(`{"args":["true"],"cwd":"/"}`)}
	if _, err := s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: spec}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("Exec before Start: %v; want FailedPrecondition", err)
	}
	if _, err := s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", ExecID: "e1", Spec: &anypb.Any{Value: []byte("{")}}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Fatalf("Exec with a bad spec: %v; want InvalidArgument", err)
	}
	if _, err := s.Exec(ctx, &taskapi.ExecProcessRequest{ID: "c1", Spec: spec}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Fatalf("Exec without an exec id: %v; want InvalidArgument", err)
	}
	if _, err := s.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: "c1", Width: 80, Height: 24}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("ResizePty before Start: %v; want FailedPrecondition", err)
	}
	if _, err := s.CloseIO(ctx, &taskapi.CloseIORequest{ID: "c1", ExecID: "nope", Stdin: true}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("CloseIO of an unknown exec: %v; want NotFound", err)
	}
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 9}); err != nil {
		t.Fatalf("Kill before Start: %v", err)
	}
	w, err := s.Wait(ctx, &taskapi.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 137 {
		t.Fatalf("Wait after SIGKILL = %v, %v; want 137", w, err)
	}
	if _, err := s.Kill(ctx, &taskapi.KillRequest{ID: "c1", Signal: 15}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("Kill after exit: %v; want NotFound (process already finished)", err)
	}
	if _, err := s.Start(ctx, &taskapi.StartRequest{ID: "c1"}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Fatalf("Start after exit: %v; want FailedPrecondition", err)
	}
	d, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"})
	if err != nil || d.ExitStatus != 137 {
		t.Fatalf("Delete = %v, %v; want status 137", d, err)
	}
	if _, err := s.Delete(ctx, &taskapi.DeleteRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Fatalf("second Delete: %v; want NotFound", err)
	}
	if _, err := s.Shutdown(ctx, &taskapi.ShutdownRequest{ID: "c1"}); err != nil || *shutdowns != 1 {
		t.Fatalf("Shutdown after Delete: %v, %d shutdowns; want 1", err, *shutdowns)
	}
}

func TestServiceCreateErrors(t *testing.T) {
	ctx := context.Background()
	s, bundle, _ := newTestService(t)
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c2", Bundle: bundle}); !errdefs.IsInvalidArgument(errgrpc.ToNative(err)) {
		t.Errorf("Create of another id: %v; want InvalidArgument", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: t.TempDir()}); err == nil {
		t.Errorf("Create without config.json succeeded")
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle, Checkpoint: "/cp"}); !errdefs.IsNotImplemented(errgrpc.ToNative(err)) {
		t.Errorf("Create from a checkpoint: %v; want NotImplemented", err)
	}
	// A failed Create leaves the shim ready for a good one.
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Errorf("Create after failures: %v", err)
	}
}

func TestServiceNotImplemented(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newTestService(t)
	calls := map[string]func() error{
		"Pause":      func() error { _, err := s.Pause(ctx, &taskapi.PauseRequest{ID: "c1"}); return err },
		"Resume":     func() error { _, err := s.Resume(ctx, &taskapi.ResumeRequest{ID: "c1"}); return err },
		"Checkpoint": func() error { _, err := s.Checkpoint(ctx, &taskapi.CheckpointTaskRequest{ID: "c1"}); return err },
		"Update":     func() error { _, err := s.Update(ctx, &taskapi.UpdateTaskRequest{ID: "c1"}); return err },
	}
	for name, call := range calls {
		if err := errgrpc.ToNative(call()); !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("%s: %v; want NotImplemented", name, err)
		}
	}
}

// TestPidsStatsBeforeStart: Pids and Stats name the task they serve, and
// before the container runs there is nothing to list or measure.
func TestPidsStatsBeforeStart(t *testing.T) {
	ctx := context.Background()
	s, bundle, _ := newTestService(t)
	if _, err := s.Pids(ctx, &taskapi.PidsRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("Pids before Create: %v; want NotFound", err)
	}
	if _, err := s.Stats(ctx, &taskapi.StatsRequest{ID: "c1"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("Stats before Create: %v; want NotFound", err)
	}
	if _, err := s.Create(ctx, &taskapi.CreateTaskRequest{ID: "c1", Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pids(ctx, &taskapi.PidsRequest{ID: "c2"}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("Pids of another task: %v; want NotFound", err)
	}
	r, err := s.Pids(ctx, &taskapi.PidsRequest{ID: "c1"})
	if err != nil || len(r.Processes) != 0 {
		t.Errorf("Pids of a created task = %v, %v; want no processes", r, err)
	}
	if _, err := s.Stats(ctx, &taskapi.StatsRequest{ID: "c1"}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Errorf("Stats of a created task: %v; want FailedPrecondition", err)
	}
}

func TestStateDir(t *testing.T) {
	a := stateDir("/run/containerd/containerd.sock.ttrpc", "default", "c1")
	for _, other := range []string{
		stateDir("/tmp/x/containerd.sock.ttrpc", "default", "c1"),
		stateDir("/run/containerd/containerd.sock.ttrpc", "k8s.io", "c1"),
		stateDir("/run/containerd/containerd.sock.ttrpc", "default", "c2"),
	} {
		if other == a {
			t.Errorf("stateDir collides: %s", a)
		}
	}
	if a != stateDir("/run/containerd/containerd.sock.ttrpc", "default", "c1") {
		t.Errorf("stateDir is not stable")
	}
	// agent.sock must fit a unix socket path (108 bytes) under it.
	if p := filepath.Join(a, "sandboxes", sandboxName, "runtime", "agent.sock"); len(p) >= 108 {
		t.Errorf("agent socket path %q is %d bytes; want < 108", p, len(p))
	}
}

func TestParseFlags(t *testing.T) {
	f, err := parseFlags([]string{"-namespace", "default", "-address", "/run/containerd/containerd.sock",
		"-publish-binary", "/usr/bin/containerd", "-id", "c1", "-debug", "start"})
	if err != nil {
		t.Fatal(err)
	}
	if f.namespace != "default" || f.id != "c1" || f.action != "start" || !f.debug {
		t.Errorf("parseFlags() = %+v", f)
	}
	if _, err := parseFlags([]string{"-bogus"}); err == nil {
		t.Errorf("parseFlags(-bogus) succeeded")
	}
}
