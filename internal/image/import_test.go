package image

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/erofs/go-erofs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
)

func writeDockerArchive(t *testing.T, refs map[string]v1.Image) string {
	t.Helper()
	m := map[name.Tag]v1.Image{}
	for r, img := range refs {
		tag, err := name.NewTag(r)
		if err != nil {
			t.Fatal(err)
		}
		m[tag] = img
	}
	path := filepath.Join(t.TempDir(), "save.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := tarball.MultiWrite(m, f); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeLayout(t *testing.T, imgs map[string]v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for tag, img := range imgs {
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: tag})); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestImport(t *testing.T) {
	a, b := testImage(t), randomImage(t, 2048, 2)
	ad, _ := a.Digest()
	bd, _ := b.Digest()
	tests := []struct {
		name       string
		path       func(t *testing.T) string
		ref        string
		wantRef    string
		wantDigest v1.Hash
		wantErr    error
	}{
		{"docker save, ref from archive", func(t *testing.T) string {
			return writeDockerArchive(t, map[string]v1.Image{"example.com/a:1": a})
		}, "", "example.com/a:1", ad, nil},
		{"docker save, renamed", func(t *testing.T) string {
			return writeDockerArchive(t, map[string]v1.Image{"example.com/a:1": a})
		}, "mine:v", "docker.io/library/mine:v", ad, nil},
		{"docker save, pick one of two", func(t *testing.T) string {
			return writeDockerArchive(t, map[string]v1.Image{"example.com/a:1": a, "example.com/b:2": b})
		}, "example.com/b:2", "example.com/b:2", bd, nil},
		{"docker save, two and no ref", func(t *testing.T) string {
			return writeDockerArchive(t, map[string]v1.Image{"example.com/a:1": a, "example.com/b:2": b})
		}, "", "", v1.Hash{}, ErrNotFound},
		{"docker save | gzip", func(t *testing.T) string {
			return gzipped(t, writeDockerArchive(t, map[string]v1.Image{"example.com/a:1": a}))
		}, "", "example.com/a:1", ad, nil},
		{"oci layout, one image", func(t *testing.T) string {
			return writeLayout(t, map[string]v1.Image{"v1": a})
		}, "local/a:v1", "docker.io/local/a:v1", ad, nil},
		{"oci layout, pick by tag", func(t *testing.T) string {
			return writeLayout(t, map[string]v1.Image{"v1": a, "v2": b})
		}, "local/b:v2", "docker.io/local/b:v2", bd, nil},
		{"oci layout, full ref annotation", func(t *testing.T) string {
			return writeLayout(t, map[string]v1.Image{"registry.test/x/y:3": b})
		}, "", "registry.test/x/y:3", bd, nil},
		{"not an archive", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "junk")
			os.WriteFile(p, []byte("hello"), 0o600)
			return p
		}, "x", "", v1.Hash{}, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, Options{})
			img, err := s.Import(t.Context(), tt.path(t), tt.ref, nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Import = %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if img.Ref != tt.wantRef || img.ManifestDigest != tt.wantDigest.String() {
				t.Errorf("Import = %s %s; want %s %s", img.Ref, img.ManifestDigest, tt.wantRef, tt.wantDigest)
			}
			// Imported images are cached: a never-pull finds them.
			if _, err := s.Pull(t.Context(), tt.wantRef, PullNever, nil); err != nil {
				t.Errorf("Pull(never) after import: %v", err)
			}
			path, err := s.Rootfs(t.Context(), img)
			if err != nil {
				t.Fatalf("Rootfs: %v", err)
			}
			fsckEROFS(t, path)
		})
	}
}

func TestImportDir(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to create root-owned files, a setuid binary and security.capability")
	}
	dir := t.TempDir()
	mustWrite := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite("bin/tool", "tool", 0o755|os.ModeSetuid)
	mustWrite("usr/bin/ping", "ping", 0o755)
	mustWrite("etc/conf", "conf", 0o644)
	if err := os.Link(filepath.Join(dir, "etc/conf"), filepath.Join(dir, "etc/conf.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/conf", filepath.Join(dir, "bin/conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "etc/conf"), 1000, 1001); err != nil {
		t.Fatal(err)
	}
	// VFS_CAP_REVISION_2 with cap_net_raw permitted+effective.
	capv := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Setxattr(filepath.Join(dir, "usr/bin/ping"), "security.capability", capv, 0); err != nil {
		t.Skipf("cannot set security.capability here: %v", err)
	}

	s := newStore(t, Options{})
	if _, err := s.Import(t.Context(), dir, "", nil); err == nil {
		t.Errorf("Import(plain dir, no ref) = nil; want an error")
	}
	img, err := s.Import(t.Context(), dir, "localhost/dir:1", nil)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	path, err := s.Rootfs(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	fsckEROFS(t, path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := erofs.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	stat := func(p string) *erofs.Stat {
		t.Helper()
		fi, err := fs.Stat(e, p)
		if err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		return fi.Sys().(*erofs.Stat)
	}
	if st := stat("bin/tool"); st.Mode&fs.ModeSetuid == 0 || st.Mode.Perm() != 0o755 {
		t.Errorf("bin/tool mode = %v; want setuid 0755", st.Mode)
	}
	if st := stat("root"); st.Mode.Perm() != 0o700 || st.UID != 0 {
		t.Errorf("root dir = %v uid %d; want 0700 uid 0", st.Mode, st.UID)
	}
	if st := stat("etc/conf"); st.UID != 1000 || st.GID != 1001 {
		t.Errorf("etc/conf owner = %d:%d; want 1000:1001", st.UID, st.GID)
	}
	if a, b := stat("etc/conf"), stat("etc/conf.link"); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: inodes %d, %d nlink %d; want one inode with nlink 2", a.Ino, b.Ino, a.Nlink)
	}
	if got := stat("usr/bin/ping").Xattrs["security.capability"]; got != string(capv) {
		t.Errorf("ping security.capability = %x; want %x", got, capv)
	}
	if target, err := fs.ReadLink(e, "bin/conf"); err != nil || target != "../etc/conf" {
		t.Errorf("bin/conf -> %q, %v; want ../etc/conf", target, err)
	}
	if img.Config.Env == nil {
		t.Errorf("plain-dir image has no PATH")
	}
}

func TestLayerFromDirDeterministic(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"b", "a", "c/d"} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644)
	}
	var digests []string
	for range 2 {
		img, err := ImageFromDir(t.Context(), dir, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.CreatedAt(img, v1.Time{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("two images of one tree: %s, %s; want equal", digests[0], digests[1])
	}
}

func TestPushThenPull(t *testing.T) {
	reg := newTestRegistry(t, false)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("hi"), 0o644)
	img, err := ImageFromDir(t.Context(), dir, Config{Cmd: []string{"/hello"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/pushed/img:v"
	s := newStore(t, Options{})
	if err := s.Push(t.Context(), ref, img); err != nil {
		t.Fatalf("Push: %v", err)
	}
	got, err := newStore(t, Options{}).Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	want, _ := img.Digest()
	if got.ManifestDigest != want.String() || len(got.Config.Cmd) != 1 || got.Config.Cmd[0] != "/hello" {
		t.Errorf("pulled %s %v; want %s [/hello]", got.ManifestDigest, got.Config.Cmd, want)
	}
}

// gzipped compresses path to path+".gz".
func gzipped(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(path+".gz", buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path + ".gz"
}
