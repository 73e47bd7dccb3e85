package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/snapshot"
	"github.com/msb-go/msb/internal/store"
)

// storedSandbox inserts a sandbox row with cfg and status and, unless
// noUpper, a small sparse upper holding "hello" at 1 MiB.
func storedSandbox(t *testing.T, m *Manager, name string, cfg Config, status store.SandboxStatus, noUpper bool) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Home.EnsureSandboxDirs(name); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Store.CreateSandbox(t.Context(), name, raw, status); err != nil {
		t.Fatal(err)
	}
	if noUpper {
		return
	}
	f, err := os.Create(m.Home.UpperPath(name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello"), 1<<20); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotSandbox(t *testing.T) {
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenAt(t.Context(), h)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	digest := "sha256:" + strings.Repeat("c", 64)
	img := Config{Image: "busybox:latest", ImageDigest: digest}
	storedSandbox(t, m, "img", img, store.StatusStopped, false)
	storedSandbox(t, m, "running", img, store.StatusRunning, false)
	storedSandbox(t, m, "live", Config{Rootfs: "/srv/root", RootfsLive: true}, store.StatusStopped, true)
	storedSandbox(t, m, "dir", Config{Rootfs: "/srv/root"}, store.StatusStopped, false)
	storedSandbox(t, m, "gone", img, store.StatusStopped, true)

	refusals := []struct {
		from string
		want error
	}{
		{"running", ErrRunning},
		{"live", ErrNoUpper},
		{"dir", ErrSnapshotImage},
		{"gone", ErrNoUpper},
		{"missing", ErrNotFound},
		{"../img", nil}, // invalid name: any error
	}
	for _, tt := range refusals {
		_, err := m.Snapshot(t.Context(), tt.from, "s1", snapshot.CreateOptions{})
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("Snapshot(%q) = %v; want %v", tt.from, err, tt.want)
		}
	}
	if _, err := m.Snapshot(t.Context(), "running", "s1", snapshot.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "msb stop running") {
		t.Errorf("Snapshot(running) = %v; want a hint to stop it", err)
	}

	in, err := m.Snapshot(t.Context(), "img", "s1", snapshot.CreateOptions{Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Manifest.Image; got.Reference != "busybox:latest" || got.ManifestDigest != digest {
		t.Errorf("snapshot image = %+v; want busybox:latest %s", got, digest)
	}
	if in.Manifest.SourceSandbox != "img" || in.Manifest.Labels["k"] != "v" || in.Manifest.Upper.SizeBytes != 64<<20 {
		t.Errorf("manifest = %+v", in.Manifest)
	}
	if err := m.Snapshots().Verify(t.Context(), "s1"); err != nil {
		t.Errorf("Verify = %v", err)
	}
	if _, err := m.Snapshot(t.Context(), "img", "s1", snapshot.CreateOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("Snapshot(existing name) = %v; want ErrExists", err)
	}
	again, err := m.Snapshot(t.Context(), "img", "s1", snapshot.CreateOptions{Force: true})
	if err != nil || again.ID == in.ID {
		t.Errorf("Snapshot(-f) = %v, id %s (old %s); want a new snapshot", err, again.ID, in.ID)
	}

	// applySnapshot: the image comes from the snapshot; another image or a
	// directory root is refused.
	for _, tt := range []struct {
		cfg     Config
		wantErr bool
	}{
		{Config{Snapshot: "s1"}, false},
		{Config{Snapshot: "s1", Image: "busybox:latest"}, false},
		{Config{Snapshot: "s1", Image: "alpine"}, true},
		{Config{Snapshot: "s1", Rootfs: "/srv/root"}, true},
		{Config{Snapshot: "s1", UpperSizeBytes: 1 << 30}, true},
		{Config{Snapshot: "nope"}, true},
	} {
		cfg := tt.cfg
		_, err := m.applySnapshot(t.Context(), &cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("applySnapshot(%+v) = %v; want error %v", tt.cfg, err, tt.wantErr)
			continue
		}
		if err == nil && (cfg.Image != "busybox:latest" || cfg.ImageDigest != digest || cfg.Snapshot != again.ID || cfg.UpperSizeBytes != 64<<20) {
			t.Errorf("applySnapshot(%+v) made %+v", tt.cfg, cfg)
		}
	}

	// Export, remove, import: refused while the image is not cached.
	var buf bytes.Buffer
	if err := m.Snapshots().Export(t.Context(), "s1", &buf, false); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "s1.tar.zst")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Snapshots().Remove(t.Context(), "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.SnapshotDir("s1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed snapshot's directory: %v; want it gone", err)
	}
	_, err = m.ImportSnapshot(t.Context(), file, "s1", false)
	if !errors.Is(err, ErrImageNotCached) || !strings.Contains(err.Error(), "msb pull busybox:latest") {
		t.Errorf("ImportSnapshot without the image = %v; want ErrImageNotCached with a pull hint", err)
	}
	if _, err := m.Snapshots().Inspect(t.Context(), "s1"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("refused import is indexed: %v", err)
	}
	// The repository itself (no image check) imports it with the same id.
	got, err := m.Snapshots().Import(t.Context(), file, "s1", false, nil)
	if err != nil || got.ID != again.ID {
		t.Errorf("Import = %v, id %s; want id %s", err, got.ID, again.ID)
	}
	// The same snapshot under a second name is refused; over itself with
	// force it is replaced.
	if _, err := m.Snapshots().Import(t.Context(), file, "s2", false, nil); !errors.Is(err, ErrExists) {
		t.Errorf("Import of an indexed snapshot as s2 = %v; want ErrExists", err)
	}
	if _, err := m.Snapshots().Import(t.Context(), file, "s1", true, nil); err != nil {
		t.Errorf("Import -f over itself = %v", err)
	}
	if err := m.Snapshots().Verify(t.Context(), "s1"); err != nil {
		t.Errorf("Verify after Import -f = %v", err)
	}
}
