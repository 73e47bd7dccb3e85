package home

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"web-1", true},
		{"My_Box.2", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{".", false},
		{"..", false},
		{".hidden", false},
		{"-x", false},
		{"_x", false},
		{"a/b", false},
		{"a b", false},
		{"a\x00", false},
		{"é", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidName(tt.name)
			if got := err == nil; got != tt.ok {
				t.Errorf("ValidName(%q) = %v; want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "web-1", "..", "a/b", strings.Repeat("z", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName(name) != nil {
			return
		}
		// A valid name must stay one clean path element below its parent.
		if filepath.Base(name) != name || filepath.Clean(name) != name || strings.HasPrefix(name, ".") {
			t.Errorf("ValidName(%q) accepted a name that is not a plain path element", name)
		}
	})
}

func TestResolveEnv(t *testing.T) {
	root := filepath.Join(t.TempDir(), "h")
	t.Setenv(EnvVar, root)
	h, err := Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if h.Root != root {
		t.Errorf("Resolve().Root = %q; want %q", h.Root, root)
	}
	for _, dir := range []string{root, filepath.Join(root, "db")} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != DirMode {
			t.Errorf("mode of %s = %v; want %v", dir, got, DirMode)
		}
	}
}

func TestResolveDefault(t *testing.T) {
	user := t.TempDir()
	t.Setenv(EnvVar, "")
	t.Setenv("HOME", user)
	h, err := Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(user, ".msb"); h.Root != want {
		t.Errorf("Resolve().Root = %q; want %q", h.Root, want)
	}
}

func TestAtTightensMode(t *testing.T) {
	root := filepath.Join(t.TempDir(), "h")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil { // defeat umask
		t.Fatal(err)
	}
	if _, err := At(root); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != DirMode {
		t.Errorf("mode after At = %v; want %v", got, DirMode)
	}
}

func TestAtRejectsFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := At(f); err == nil {
		t.Errorf("At(%q) on a regular file = nil error; want error", f)
	}
	if _, err := At(""); err == nil {
		t.Errorf("At(\"\") = nil error; want error")
	}
}

func TestPaths(t *testing.T) {
	h := Home{Root: "/r"}
	got := map[string]string{
		"DBPath":         h.DBPath(),
		"CacheDir":       h.CacheDir(),
		"BlobsDir":       h.BlobsDir(),
		"LayersDir":      h.LayersDir(),
		"ImagesDir":      h.ImagesDir(),
		"TmpDir":         h.TmpDir(),
		"SandboxDir":     h.SandboxDir("s"),
		"LockPath":       h.LockPath("s"),
		"UpperPath":      h.UpperPath("s"),
		"LogsDir":        h.LogsDir("s"),
		"RuntimeLogPath": h.RuntimeLogPath("s"),
		"KernelLogPath":  h.KernelLogPath("s"),
		"ExecLogPath":    h.ExecLogPath("s"),
		"BootErrorPath":  h.BootErrorPath("s"),
		"RuntimeDir":     h.RuntimeDir("s"),
		"AgentSock":      h.AgentSock("s"),
		"HeartbeatPath":  h.HeartbeatPath("s"),
		"GuestDir":       h.GuestDir("s"),
		"LaunchPath":     h.LaunchPath("s"),
		"VolumesDir":     h.VolumesDir(),
		"VolumeDir":      h.VolumeDir("v"),
		"SnapshotsDir":   h.SnapshotsDir(),
		"SnapshotDir":    h.SnapshotDir("n"),
		"TLSDir":         h.TLSDir(),
		"KernelDir":      h.KernelDir(),
	}
	want := map[string]string{
		"DBPath":         "/r/db/msb.db",
		"CacheDir":       "/r/cache",
		"BlobsDir":       "/r/cache/blobs",
		"LayersDir":      "/r/cache/layers",
		"ImagesDir":      "/r/cache/images",
		"TmpDir":         "/r/cache/tmp",
		"SandboxDir":     "/r/sandboxes/s",
		"LockPath":       "/r/sandboxes/s/lock",
		"UpperPath":      "/r/sandboxes/s/upper.ext4",
		"LogsDir":        "/r/sandboxes/s/logs",
		"RuntimeLogPath": "/r/sandboxes/s/logs/runtime.log",
		"KernelLogPath":  "/r/sandboxes/s/logs/kernel.log",
		"ExecLogPath":    "/r/sandboxes/s/logs/exec.log",
		"BootErrorPath":  "/r/sandboxes/s/logs/boot-error.json",
		"RuntimeDir":     "/r/sandboxes/s/runtime",
		"AgentSock":      "/r/sandboxes/s/runtime/agent.sock",
		"HeartbeatPath":  "/r/sandboxes/s/guest/heartbeat.json",
		"GuestDir":       "/r/sandboxes/s/guest",
		"LaunchPath":     "/r/sandboxes/s/runtime/launch.json",
		"VolumesDir":     "/r/volumes",
		"VolumeDir":      "/r/volumes/v",
		"SnapshotsDir":   "/r/snapshots",
		"SnapshotDir":    "/r/snapshots/n",
		"TLSDir":         "/r/tls",
		"KernelDir":      "/r/kernel",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paths mismatch (-want +got):\n%s", diff)
	}
}

func TestEnsureSandboxDirs(t *testing.T) {
	h, err := At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSandboxDirs("box"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{h.SandboxDir("box"), h.LogsDir("box"), h.RuntimeDir("box")} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != DirMode {
			t.Errorf("mode of %s = %v; want %v", dir, got, DirMode)
		}
	}
	if err := h.EnsureSandboxDirs("../x"); err == nil {
		t.Errorf("EnsureSandboxDirs(\"../x\") = nil; want error")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		perm os.FileMode
		data string
	}{
		{"secret", FileMode, `{"token":"x"}`},
		{"replace keeps new mode", 0o644, "second"},
		{"empty", FileMode, ""},
	}
	path := filepath.Join(dir, "launch.json")
	// A stale temp file with a looser mode must not leak its mode.
	if err := os.WriteFile(path+".tmp", []byte("stale"), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := WriteFileAtomic(path, []byte(tt.data), tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.data {
				t.Errorf("content = %q; want %q", got, tt.data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode = %v; want %v", fi.Mode().Perm(), tt.perm)
			}
			if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("temp file left behind: %v", err)
			}
		})
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, FileMode); err == nil {
		t.Errorf("WriteFileAtomic(missing dir) = nil; want error")
	}
}

func TestRemoveSecretFiles(t *testing.T) {
	h, err := At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSandboxDirs("sb"); err != nil {
		t.Fatal(err)
	}
	keep := h.AgentSock("sb")
	for _, p := range []string{h.InitramfsPath("sb"), h.LaunchPath("sb"), keep} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.RemoveSecretFiles("sb"); err != nil {
		t.Fatalf("RemoveSecretFiles = %v", err)
	}
	for _, p := range []string{h.InitramfsPath("sb"), h.LaunchPath("sb")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s: %v; want removed", p, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("RemoveSecretFiles removed %s: %v", keep, err)
	}
	if err := h.RemoveSecretFiles("sb"); err != nil {
		t.Errorf("RemoveSecretFiles again = %v; want nil", err)
	}
}
