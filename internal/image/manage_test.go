package image

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/msb-go/msb/internal/store"
)

func TestListRemovePrune(t *testing.T) {
	reg := newTestRegistry(t, false)
	refA, refB := reg.Host+"/m/a:1", reg.Host+"/m/b:1"
	push(t, refA, randomImage(t, 4096, 2))
	push(t, refB, randomImage(t, 4096, 1))
	s := newStore(t, Options{})
	ctx := t.Context()
	a, err := s.Pull(ctx, refA, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Pull(ctx, refB, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rootA, err := s.Rootfs(ctx, a)
	if err != nil {
		t.Fatal(err)
	}

	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Ref != refA || list[1].Ref != refB {
		t.Fatalf("List = %+v; want %s, %s", list, refA, refB)
	}

	// A sandbox uses a: rm refuses it without force.
	sb, err := s.db.CreateSandbox(ctx, "box", json.RawMessage(`{}`), store.StatusStopped)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.SetSandboxRootfs(ctx, store.Rootfs{SandboxID: sb.ID, ManifestDigest: a.ManifestDigest,
		Mode: store.RootfsEROFS, UpperFSType: "ext4"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, refA, false); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove(in use) = %v; want ErrInUse", err)
	}
	if err := s.Remove(ctx, refA, true); err != nil {
		t.Fatalf("Remove(in use, force) = %v", err)
	}
	if _, err := s.Inspect(ctx, refA); !errors.Is(err, ErrNotFound) {
		t.Errorf("Inspect after rm = %v; want ErrNotFound", err)
	}
	if _, err := os.Stat(rootA); err != nil {
		t.Errorf("rootfs of an image a sandbox uses was deleted: %v", err)
	}
	if _, err := s.Inspect(ctx, a.ManifestDigest); err != nil {
		t.Errorf("Inspect(digest) of a sandbox's image = %v; want it kept", err)
	}

	// b is unused: rm drops its manifest; prune then frees its blobs.
	if err := s.Remove(ctx, refB, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, refB, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v; want ErrNotFound", err)
	}
	// A stale partial download is pruned too.
	stale := filepath.Join(s.home.TmpDir(), "sha256-"+repeat64("e")+".part")
	if err := os.WriteFile(stale, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	freed, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if freed < 4096 {
		t.Errorf("Prune freed %d bytes; want at least b's layer (4096+)", freed)
	}
	for _, l := range b.Layers {
		if s.hasBlob(l) {
			t.Errorf("blob %s of removed image still there after prune", l)
		}
	}
	for _, l := range a.Layers {
		if !s.hasBlob(l) {
			t.Errorf("blob %s of a sandbox's image pruned", l)
		}
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale .part survived prune: %v", err)
	}
	if locks, _ := filepath.Glob(filepath.Join(s.home.TmpDir(), "*.lock")); len(locks) != 0 {
		t.Errorf("free lock files survived prune: %v", locks)
	}

	// The sandbox goes: prune now frees a as well.
	if err := s.db.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rootA); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rootfs of an unused image survived prune: %v", err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after prune = %v, %v; want empty", list, err)
	}
}

func repeat64(s string) string {
	out := ""
	for len(out) < 64 {
		out += s
	}
	return out[:64]
}

func TestEnvOptions(t *testing.T) {
	t.Setenv(EnvInsecure, "reg.test:5000, other.test")
	t.Setenv(EnvCAFiles, "/a.pem")
	t.Setenv(EnvMirrors, "docker.io=m1.test:5000,m2.test;index.docker.io=m3.test")
	o, err := EnvOptions()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Insecure: []string{"reg.test:5000", "other.test"}, CAFiles: []string{"/a.pem"},
		Mirrors: map[string][]string{"docker.io": {"m1.test:5000", "m2.test", "m3.test"}}}
	if diff := cmp.Diff(want, o, cmpopts.IgnoreUnexported(Options{})); diff != "" {
		t.Errorf("EnvOptions mismatch (-want +got):\n%s", diff)
	}
	t.Setenv(EnvMirrors, "docker.io")
	if _, err := EnvOptions(); err == nil {
		t.Errorf("EnvOptions(bad mirrors) = nil; want error")
	}
}
