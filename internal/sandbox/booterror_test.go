package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/store"
)

// TestBootErrors provokes every start-up failure the sandbox process can
// reach before a VM runs and checks that the parent gets a *BootError with
// the right stage and errno, read from the boot-error.json the child wrote.
func TestBootErrors(t *testing.T) {
	t.Setenv("MSB_TEST_AS_SANDBOX", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	enoent := int(syscall.ENOENT)
	tmp := t.TempDir()
	fake := filepath.Join(tmp, "fake")
	if err := os.WriteFile(fake, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		mut       func(t *testing.T, l *launch.Launch, h home.Home)
		wantStage launch.Stage
		wantErrno *int
	}{
		{
			name: "missing rootfs image",
			mut: func(_ *testing.T, l *launch.Launch, h home.Home) {
				l.Lower, l.Upper = filepath.Join(tmp, "gone.erofs"), fake
			},
			wantStage: launch.StageImage, wantErrno: &enoent,
		},
		{
			name:      "missing qemu",
			mut:       func(_ *testing.T, l *launch.Launch, h home.Home) { l.QEMU = filepath.Join(tmp, "no-qemu") },
			wantStage: launch.StageBuildVM,
		},
		{
			name:      "missing kernel",
			mut:       func(_ *testing.T, l *launch.Launch, h home.Home) { l.Kernel = filepath.Join(tmp, "no-vmlinux") },
			wantStage: launch.StageBuildVM, wantErrno: &enoent,
		},
		{
			name:      "missing agentd",
			mut:       func(_ *testing.T, l *launch.Launch, h home.Home) { l.Agentd = filepath.Join(tmp, "no-agentd") },
			wantStage: launch.StageBuildVM, wantErrno: &enoent,
		},
		{
			name:      "unwritable database",
			mut:       func(t *testing.T, l *launch.Launch, h home.Home) { dirForDB(t, h) },
			wantStage: launch.StageConfig,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, l := bootErrorRig(t, exe, fake)
			tc.mut(t, l, h)
			_, err := launcher{home: h, exe: exe}.spawn(t.Context(), l)
			var be *BootError
			if !errors.As(err, &be) {
				t.Fatalf("spawn error = %v; want *BootError", err)
			}
			if be.Stage != tc.wantStage {
				t.Errorf("stage = %q; want %q (message %q)", be.Stage, tc.wantStage, be.Message)
			}
			if testing.Verbose() {
				t.Logf("%s: errno %s: %s", be.Stage, fmtErrno(be.Errno), be.Message)
			}
			if tc.wantErrno != nil && (be.Errno == nil || *be.Errno != *tc.wantErrno) {
				t.Errorf("errno = %v; want %d (message %q)", be.Errno, *tc.wantErrno, be.Message)
			}
			onDisk, err := launch.ReadBootError(h.BootErrorPath("sb"))
			if err != nil || onDisk == nil {
				t.Fatalf("boot-error.json = %v, %v; want the file", onDisk, err)
			}
			if onDisk.Stage != tc.wantStage {
				t.Errorf("boot-error.json stage = %q; want %q", onDisk.Stage, tc.wantStage)
			}
		})
	}
}

// bootErrorRig makes a home with sandbox "sb" marked Running and returns a
// launch document for it whose kernel and agentd are the file fake. The
// store is closed again: the sandbox process must open it itself.
func bootErrorRig(t *testing.T, exe, fake string) (home.Home, *launch.Launch) {
	t.Helper()
	ctx := t.Context()
	h, err := home.At(filepath.Join(t.TempDir(), "home"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenAt(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	m.Exe = exe
	sb, err := m.Store.CreateSandbox(ctx, "sb", []byte(`{}`), store.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSandboxDirs("sb"); err != nil {
		t.Fatal(err)
	}
	m.Store.Close()
	return h, &launch.Launch{Name: "sb", SandboxID: sb.ID, Home: h.Root, Kernel: fake, Agentd: fake,
		VCPUs: 1, MemoryMiB: 128}
}

// dirForDB puts a directory where the database file should be.
func dirForDB(t *testing.T, h home.Home) {
	t.Helper()
	if err := os.Remove(h.DBPath()); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		os.Remove(h.DBPath() + suffix)
	}
	if err := os.Mkdir(h.DBPath(), 0o700); err != nil {
		t.Fatal(err)
	}
}

func fmtErrno(e *int) string {
	if e == nil {
		return "none"
	}
	return syscall.Errno(*e).Error()
}
