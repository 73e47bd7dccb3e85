package msb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agent"
	"github.com/msb-go/msb/internal/agentclient"
)

// agentFS serves the real guest agent on one end of a socketpair, in this
// process, and returns an FS whose "guest" is the host file system: guest
// paths are host paths.
func agentFS(t *testing.T) *FS {
	t.Helper()
	return agentSandbox(t).FS()
}

// agentSandbox is agentFS's sandbox: commands run as host processes.
func agentSandbox(t *testing.T) *Sandbox {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	host, guest := conn(fds[0]), conn(fds[1])
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, guest, agent.ServeOptions{}) }()
	c, err := agentclient.NewDirect(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		guest.Close()
		<-served
	})
	return &Sandbox{name: "test", client: c}
}

// makeTree writes the test tree under dir: nested directories, a 0750
// file, a 10 MiB file, a relative and an absolute-looking symlink, an
// empty directory of mode 0700 and a read-only directory.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	big := make([]byte, 10<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"a.txt", []byte("hello\n"), 0o644},
		{"bin/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o750},
		{"deep/x/y/z/leaf", []byte("leaf"), 0o600},
		{"big.bin", big, 0o644},
		{"empty", nil, 0o444},
		{"ro/inner", []byte("inner"), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"a.txt", "link"}, {"../a.txt", "bin/up"}, {"/nonexistent/target", "dangling"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{"a.txt", "bin/run.sh", "deep/x", "private"} {
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "ro"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "ro"), 0o755) })
}

// treeSummary lists every path under dir with its type, permissions,
// mtime (directories and files), content hash and symlink target.
func treeSummary(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := fi.Mode().String()
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s += " -> " + target
		case fi.IsDir():
			s += " " + fi.ModTime().UTC().Format(time.RFC3339)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x %s", sha256.Sum256(b), fi.ModTime().UTC().Format(time.RFC3339))
		}
		if rel != "." {
			out[rel] = s
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFSCopyRoundTrip(t *testing.T) {
	f := agentFS(t)
	ctx := t.Context()
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src)
	// Directory mtimes move when entries are created: set them last.
	if err := os.Chtimes(filepath.Join(src, "deep"), time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	want := treeSummary(t, src)

	guest := filepath.Join(t.TempDir(), "guest", "tree")
	if err := f.CopyFromHost(ctx, src, guest); err != nil {
		t.Fatalf("CopyFromHost: %v", err)
	}
	if d := cmp.Diff(want, treeSummary(t, guest)); d != "" {
		t.Errorf("guest tree (-want +got):\n%s", d)
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := f.CopyToHost(ctx, guest, back); err != nil {
		t.Fatalf("CopyToHost: %v", err)
	}
	if d := cmp.Diff(want, treeSummary(t, back)); d != "" {
		t.Errorf("host tree (-want +got):\n%s", d)
	}
	os.Chmod(filepath.Join(guest, "ro"), 0o755)
	os.Chmod(filepath.Join(back, "ro"), 0o755)

	// A second copy onto the results replaces files and symlinks in place,
	// read-only ones included.
	if err := f.CopyFromHost(ctx, src, guest); err != nil {
		t.Fatalf("CopyFromHost again: %v", err)
	}
	if err := f.CopyToHost(ctx, guest, back); err != nil {
		t.Fatalf("CopyToHost again: %v", err)
	}
	if d := cmp.Diff(want, treeSummary(t, back)); d != "" {
		t.Errorf("host tree after second copy (-want +got):\n%s", d)
	}
	os.Chmod(filepath.Join(guest, "ro"), 0o755)
	os.Chmod(filepath.Join(back, "ro"), 0o755)
}

func TestFSCopySingle(t *testing.T) {
	f := agentFS(t)
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	if err := os.WriteFile(src, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := f.CopyFromHost(ctx, src, filepath.Join(dir, "g", "f2")); err != nil {
		t.Fatal(err)
	}
	if err := f.CopyToHost(ctx, filepath.Join(dir, "g", "f2"), filepath.Join(dir, "f3")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "f3"))
	if b, _ := os.ReadFile(filepath.Join(dir, "f3")); err != nil || string(b) != "one" || fi.Mode().Perm() != 0o640 {
		t.Errorf("f3 = %q %v %v; want \"one\" 0640", b, fi.Mode(), err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if err := f.CopyToHost(ctx, filepath.Join(dir, "l"), filepath.Join(dir, "l2")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(filepath.Join(dir, "l2")); got != "f" {
		t.Errorf("readlink l2 = %q, %v; want f", got, err)
	}

	err = f.CopyToHost(ctx, filepath.Join(dir, "missing"), filepath.Join(dir, "x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CopyToHost(missing) = %v; want fs.ErrNotExist", err)
	}
	err = f.CopyFromHost(ctx, filepath.Join(dir, "missing"), filepath.Join(dir, "x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CopyFromHost(missing) = %v; want fs.ErrNotExist", err)
	}
}

func TestFSOps(t *testing.T) {
	f := agentFS(t)
	ctx := t.Context()
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }

	if err := f.Write(ctx, p("a/b/c.txt"), []byte("data"), 0o600); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if b, err := f.Read(ctx, p("a/b/c.txt")); err != nil || string(b) != "data" {
		t.Errorf("Read = %q, %v; want data", b, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB, several chunks
	if err := f.WriteStream(ctx, p("big"), bytes.NewReader(big), 0); err != nil {
		t.Fatalf("WriteStream: %v", err)
	}
	r, err := f.ReadStream(ctx, p("big"))
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	var got bytes.Buffer
	got.ReadFrom(r)
	r.Close()
	if !bytes.Equal(got.Bytes(), big) {
		t.Errorf("ReadStream: %d bytes, not what was written", got.Len())
	}

	fi, err := f.Stat(ctx, p("a/b/c.txt"))
	want := FileInfo{Name: "c.txt", Path: p("a/b/c.txt"), Size: 4, Mode: 0o600}
	if err != nil || fi.ModTime.IsZero() {
		t.Fatalf("Stat = %+v, %v", fi, err)
	}
	fi.ModTime = time.Time{}
	if fi != want {
		t.Errorf("Stat = %+v; want %+v", fi, want)
	}
	if err := os.Symlink("a/b/c.txt", p("l")); err != nil {
		t.Fatal(err)
	}
	list, err := f.List(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range list {
		names = append(names, fmt.Sprintf("%s %v %v %q", e.Name, e.IsDir, e.Mode.Type(), e.Symlink))
	}
	wantNames := []string{`a true d--------- ""`, `big false ---------- ""`, `l false L--------- "a/b/c.txt"`}
	if d := cmp.Diff(wantNames, names); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}

	if ok, err := f.Exists(ctx, p("nope")); ok || err != nil {
		t.Errorf("Exists(nope) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := f.Exists(ctx, p("l")); !ok || err != nil {
		t.Errorf("Exists(l) = %v, %v; want true, nil", ok, err)
	}
	if _, err := f.Stat(ctx, p("nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(nope) = %v; want fs.ErrNotExist", err)
	}
	if _, err := f.Read(ctx, p("nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Read(nope) = %v; want fs.ErrNotExist", err)
	}

	if err := f.Mkdir(ctx, p("m/n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Rename(ctx, p("big"), p("m/n/big")); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(ctx, p("m")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Remove(non-empty dir) = %v; want fs.ErrExist", err)
	}
	if err := f.Remove(ctx, p("m/n/big")); err != nil {
		t.Errorf("Remove(file) = %v", err)
	}
	if err := f.Remove(ctx, p("m/n")); err != nil {
		t.Errorf("Remove(empty dir) = %v", err)
	}
	if err := f.Remove(ctx, p("l")); err != nil {
		t.Errorf("Remove(symlink) = %v", err)
	}
	if _, err := os.Stat(p("a/b/c.txt")); err != nil {
		t.Errorf("removing the symlink hit its target: %v", err)
	}
	if err := f.RemoveAll(ctx, p("a")); err != nil {
		t.Errorf("RemoveAll = %v", err)
	}
	if err := f.RemoveAll(ctx, p("a")); err != nil {
		t.Errorf("RemoveAll(missing) = %v; want nil", err)
	}
	if err := f.Remove(ctx, p("a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove(missing) = %v; want fs.ErrNotExist", err)
	}
}
