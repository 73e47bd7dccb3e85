package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/erofs/go-erofs"
)

// te is one tar entry of a test layer.
type te struct {
	hdr  tar.Header
	body string
}

var epoch = time.Unix(1700000000, 0)

func tFile(name, body string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: epoch}, body: body}
}
func tDir(name string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch}}
}
func tSym(name, target string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}
func tLink(name, target string) te {
	return te{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: epoch}}
}
func tDev(name string, typ byte, major, minor int64) te {
	return te{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor, ModTime: epoch}}
}
func (e te) mode(m int64) te       { e.hdr.Mode = m; return e }
func (e te) owner(uid, gid int) te { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
func (e te) size(n int64) te       { e.hdr.Size = n; e.body = ""; return e }
func (e te) xattr(name, value string) te {
	if e.hdr.PAXRecords == nil {
		e.hdr.PAXRecords = map[string]string{}
	}
	e.hdr.PAXRecords[paxXattr+name] = value
	e.hdr.Format = tar.FormatPAX
	return e
}

// mkTar serialises entries. A header whose Size was set explicitly with
// size() is written without its data, as a truncated or lying stream would.
func mkTar(tb testing.TB, entries ...te) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			tb.Fatalf("tar header %s: %v", h.Name, err)
		}
		if e.body != "" {
			if _, err := io.WriteString(tw, e.body); err != nil {
				tb.Fatal(err)
			}
		}
		if h.Size != int64(len(e.body)) {
			return buf.Bytes() // lying header: stop here, data missing
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

const escapeName = "msb-rootfs-escape-check"

// aclBlob is a system.posix_acl_access value (Linux posix_acl_xattr, version
// 2): user::rwx user:1000:r-x group::r-x mask::rwx other::r-x.
var aclBlob = string([]byte{
	2, 0, 0, 0,
	1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
	2, 0, 5, 0, 0xe8, 3, 0, 0,
	4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
	0x10, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
	0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
})

type layerCase struct {
	name    string
	layers  [][]te
	want    map[string]rec // nil when wantErr is set
	wantErr error
}

func h(s string) string { return hashOf([]byte(s)) }

var layerCases = []layerCase{
	{
		name: "every kind",
		layers: [][]te{{
			tDir("etc"),
			tFile("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
			tDir("usr/bin"),
			tSym("bin", "usr/bin"),
			tFile("usr/bin/ping", "ELF").mode(0o755).xattr("security.capability", capNetBind),
			tLink("usr/bin/ping6", "usr/bin/ping"),
			tLink("/etc/ping.hard", "/usr/bin/ping"),
			tFile("usr/bin/su", "su").mode(0o4755),
			tDev("dev/null", tar.TypeChar, 1, 3),
			tDev("dev/vda", tar.TypeBlock, 254, 0).mode(0o660).owner(0, 6),
			te{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: epoch}},
			tDir("root").mode(0o700),
			tDir("home/u").owner(1000, 1000).xattr("user.note", "hi"),
			tFile("home/u/.profile", strings.Repeat("x", 9000)).owner(1000, 1000).mode(0o600),
			tDir("tmp").mode(0o1777),
			tFile("empty", ""),
		}},
		want: map[string]rec{
			"bin":             {Mode: "Lrwxrwxrwx", Target: "usr/bin"},
			"dev":             {Mode: "drwxr-xr-x"},
			"dev/null":        {Mode: "Dcrw-rw-rw-", Rdev: "1:3"},
			"dev/vda":         {Mode: "Drw-rw----", GID: 6, Rdev: "254:0"},
			"empty":           {Mode: "-rw-r--r--", Content: h("")},
			"etc":             {Mode: "drwxr-xr-x"},
			"etc/passwd":      {Mode: "-rw-r--r--", Content: h("root:x:0:0::/root:/bin/sh\n")},
			"etc/ping.hard":   {Mode: "-rwxr-xr-x", Content: h("ELF"), Xattrs: map[string]string{"security.capability": capNetBind}},
			"home":            {Mode: "drwxr-xr-x"},
			"home/u":          {Mode: "drwxr-xr-x", UID: 1000, GID: 1000, Xattrs: map[string]string{"user.note": "hi"}},
			"home/u/.profile": {Mode: "-rw-------", UID: 1000, GID: 1000, Content: h(strings.Repeat("x", 9000))},
			"root":            {Mode: "drwx------"},
			"run":             {Mode: "drwxr-xr-x"},
			"run/fifo":        {Mode: "prw-------"},
			"tmp":             {Mode: "dtrwxrwxrwx"},
			"usr":             {Mode: "drwxr-xr-x"},
			"usr/bin":         {Mode: "drwxr-xr-x"},
			"usr/bin/ping":    {Mode: "-rwxr-xr-x", Content: h("ELF"), LinkTo: "etc/ping.hard", Xattrs: map[string]string{"security.capability": capNetBind}},
			"usr/bin/ping6":   {Mode: "-rwxr-xr-x", Content: h("ELF"), LinkTo: "etc/ping.hard", Xattrs: map[string]string{"security.capability": capNetBind}},
			"usr/bin/su":      {Mode: "urwxr-xr-x", Content: h("su")},
		},
	},
	{
		name: "whiteouts",
		layers: [][]te{
			{tFile("a/x", "x"), tFile("a/y", "y"), tFile("b/z", "z"), tFile("c", "old")},
			{tFile("a/.wh.x", ""), tFile(".wh.b", ""), tFile("c", "new"), tFile(".wh.c", ""), tFile(".wh.absent", "")},
		},
		want: map[string]rec{
			"a":   {Mode: "drwxr-xr-x"},
			"a/y": {Mode: "-rw-r--r--", Content: h("y")},
			"c":   {Mode: "-rw-r--r--", Content: h("new")},
		},
	},
	{
		name: "opaque dir, marker after entries",
		layers: [][]te{
			{tFile("d/old", "o"), tFile("d/sub/old2", "o2"), tFile("keep", "k")},
			{tDir("d"), tFile("d/new", "n"), tFile("d/.wh..wh..opq", "")},
		},
		want: map[string]rec{
			"d":     {Mode: "drwxr-xr-x"},
			"d/new": {Mode: "-rw-r--r--", Content: h("n")},
			"keep":  {Mode: "-rw-r--r--", Content: h("k")},
		},
	},
	{
		name: "opaque dir, marker first",
		layers: [][]te{
			{tFile("d/old", "o")},
			{tFile("d/.wh..wh..opq", ""), tFile("d/new", "n")},
			{tFile("d/newer", "nn")},
		},
		want: map[string]rec{
			"d":       {Mode: "drwxr-xr-x"},
			"d/new":   {Mode: "-rw-r--r--", Content: h("n")},
			"d/newer": {Mode: "-rw-r--r--", Content: h("nn")},
		},
	},
	{
		name: "hardlinks across layers",
		layers: [][]te{
			{tFile("f", "v1"), tFile("w", "w")},
			{tLink("g", "f"), tLink("w2", "w")},
			{tFile("f", "v2"), tFile(".wh.w", "")},
		},
		want: map[string]rec{
			"f":  {Mode: "-rw-r--r--", Content: h("v2")},
			"g":  {Mode: "-rw-r--r--", Content: h("v1")},
			"w2": {Mode: "-rw-r--r--", Content: h("w")},
		},
	},
	{
		name:   "absolute names are confined",
		layers: [][]te{{tFile("/etc/abs", "a"), tFile("///./etc//./rel", "r")}},
		want: map[string]rec{
			"etc":     {Mode: "drwxr-xr-x"},
			"etc/abs": {Mode: "-rw-r--r--", Content: h("a")},
			"etc/rel": {Mode: "-rw-r--r--", Content: h("r")},
		},
	},
	{
		name: "write through relative symlink stays inside",
		layers: [][]te{
			{tSym("evil", "../../../../../../tmp")},
			{tFile("evil/"+escapeName, "pwned")},
		},
		want: map[string]rec{
			"evil":              {Mode: "Lrwxrwxrwx", Target: "../../../../../../tmp"},
			"tmp":               {Mode: "drwxr-xr-x"},
			"tmp/" + escapeName: {Mode: "-rw-r--r--", Content: h("pwned")},
		},
	},
	{
		name: "write through absolute symlink stays inside",
		layers: [][]te{{
			tSym("evil", "/tmp"),
			tSym("tmp", "/"),
			tFile("evil/"+escapeName, "pwned"),
			tSym("deep", "a/../../../b"),
			tFile("deep/c", "c"),
		}},
		// Missing directories met while resolving are created, also
		// inside a symlink's target ("a" here), as for any parent.
		want: map[string]rec{
			"a":        {Mode: "drwxr-xr-x"},
			"b":        {Mode: "drwxr-xr-x"},
			"b/c":      {Mode: "-rw-r--r--", Content: h("c")},
			"deep":     {Mode: "Lrwxrwxrwx", Target: "a/../../../b"},
			"evil":     {Mode: "Lrwxrwxrwx", Target: "/tmp"},
			"tmp":      {Mode: "Lrwxrwxrwx", Target: "/"},
			escapeName: {Mode: "-rw-r--r--", Content: h("pwned")},
		},
	},
	manyLinks(),
	{
		name: "pax global header and posix acl",
		layers: [][]te{{
			te{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "x"}, Format: tar.FormatPAX}},
			tFile("f", "f").xattr("system.posix_acl_access", aclBlob),
		}},
		want: map[string]rec{"f": {Mode: "-rw-r--r--", Content: h("f"), Xattrs: map[string]string{"system.posix_acl_access": aclBlob}}},
	},
	{name: "dotdot", layers: [][]te{{tFile("../../x", "x")}}, wantErr: ErrUnsafePath},
	{name: "dotdot inside", layers: [][]te{{tFile("a/../../x", "x")}}, wantErr: ErrUnsafePath},
	{name: "hardlink outside", layers: [][]te{{tFile("f", "f"), tLink("g", "../f")}}, wantErr: ErrBadHardlink},
	{name: "hardlink missing", layers: [][]te{{tLink("g", "/etc/missing")}}, wantErr: ErrBadHardlink},
	{name: "hardlink to dir", layers: [][]te{{tDir("d"), tLink("g", "d")}}, wantErr: ErrBadHardlink},
	{name: "hardlink whited out", layers: [][]te{{tFile("f", "f")}, {tFile(".wh.f", ""), tLink("g", "f")}}, wantErr: ErrBadHardlink},
	{name: "huge size header", layers: [][]te{{tFile("big", "").size(1 << 50)}}, wantErr: ErrTooLarge},
	{name: "truncated data", layers: [][]te{{tFile("big", "").size(1 << 20)}}, wantErr: io.ErrUnexpectedEOF},
	{name: "file as parent", layers: [][]te{{tFile("f", "f"), tFile("f/x", "x")}}, wantErr: ErrUnsafePath},
	{name: "symlink loop", layers: [][]te{{tSym("a", "b"), tSym("b", "a"), tFile("a/x", "x")}}, wantErr: ErrUnsafePath},
	{name: "huge xattr", layers: [][]te{{tFile("f", "f").xattr("user.big", strings.Repeat("v", 70000))}}, wantErr: ErrTooLarge},
	{name: "huge uid", layers: [][]te{{tFile("f", "f").owner(1<<40, 0).xattr("user.x", "")}}, wantErr: ErrTooLarge},
	{name: "long name", layers: [][]te{{tFile(strings.Repeat("n", 300), "f")}}, wantErr: ErrTooLarge},
	{name: "empty symlink", layers: [][]te{{tSym("s", "")}}, wantErr: ErrUnsupported},
}

// manyLinks makes directories spanning several EROFS blocks (flat-plain
// dirents) with hardlinks both ways between them, so patchHardlinks has to
// find dirents beyond the first block.
func manyLinks() layerCase {
	var l []te
	want := map[string]rec{
		"a": {Mode: "drwxr-xr-x"},
		"b": {Mode: "drwxr-xr-x"},
	}
	for i := range 300 {
		name := fmt.Sprintf("a/file-with-a-rather-long-name-%03d", i)
		body := fmt.Sprint(i)
		l = append(l, tFile(name, body))
		want[name] = rec{Mode: "-rw-r--r--", Content: h(body)}
	}
	for i := 0; i < 300; i += 7 {
		target := fmt.Sprintf("a/file-with-a-rather-long-name-%03d", i)
		for _, link := range []string{
			fmt.Sprintf("a/zz-link-%03d", i),
			fmt.Sprintf("b/link-%03d", i),
		} {
			l = append(l, tLink(link, target))
			r := want[target]
			r.LinkTo = target
			want[link] = r
		}
	}
	return layerCase{name: "hardlinks in multi-block directories", layers: [][]te{l}, want: want}
}

func layerReaders(tb testing.TB, layers [][]te) []io.Reader {
	var rs []io.Reader
	for _, l := range layers {
		rs = append(rs, bytes.NewReader(mkTar(tb, l...)))
	}
	return rs
}

func TestBuildFromLayers(t *testing.T) {
	if _, err := os.Lstat("/tmp/" + escapeName); err == nil {
		t.Fatalf("/tmp/%s exists before the test; remove it", escapeName)
	}
	for _, tt := range layerCases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "root.erofs")
			err := BuildFromLayers(t.Context(), layerReaders(t, tt.layers), img)
			if _, serr := os.Lstat("/tmp/" + escapeName); serr == nil {
				t.Fatalf("/tmp/%s was created on the host", escapeName)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("BuildFromLayers() = %v; want %v", err, tt.wantErr)
				}
				ents, _ := os.ReadDir(dir)
				if len(ents) != 0 {
					t.Errorf("dir after failure holds %d entries (%s...); want none", len(ents), ents[0].Name())
				}
				return
			}
			if err != nil {
				t.Fatalf("BuildFromLayers: %v", err)
			}
			if os.Getuid() != 0 {
				fsckCheck(t, img)
				t.Skip("comparing extracted ownership and devices needs root (fsck.erofs preserves them only as root)")
			}
			diffTrees(t, fsckExtract(t, img), tt.want)
		})
	}
}

func TestBuildFromLayersCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	img := filepath.Join(t.TempDir(), "root.erofs")
	err := BuildFromLayers(ctx, layerReaders(t, layerCases[0].layers), img)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("BuildFromLayers(cancelled) = %v; want context.Canceled", err)
	}
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Errorf("stat image: %v; want not exist", err)
	}
}

func FuzzBuildFromLayers(f *testing.F) {
	for _, tt := range layerCases {
		var all []byte
		for _, l := range tt.layers {
			all = append(all, mkTar(f, l...)...)
		}
		first := mkTar(f, tt.layers[0]...)
		f.Add(all, len(first))
	}
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		if split < 0 || split > len(data) {
			split = len(data)
		}
		dir := t.TempDir()
		img := filepath.Join(dir, "out.erofs")
		layers := []io.Reader{bytes.NewReader(data[:split]), bytes.NewReader(data[split:])}
		err := BuildFromLayers(t.Context(), layers, img)
		ents, rerr := os.ReadDir(dir)
		if rerr != nil {
			t.Fatal(rerr)
		}
		switch {
		case err != nil && len(ents) != 0:
			t.Fatalf("failed build left %q in its directory", ents[0].Name())
		case err == nil && (len(ents) != 1 || ents[0].Name() != "out.erofs"):
			t.Fatalf("build left %d entries; want only out.erofs", len(ents))
		}
		if _, serr := os.Lstat("/tmp/" + escapeName); serr == nil {
			t.Fatalf("/tmp/%s was created on the host", escapeName)
		}
	})
}

func TestBuildFromLayersDeterministic(t *testing.T) {
	dir := t.TempDir()
	var images [][]byte
	for i := range 2 {
		img := filepath.Join(dir, fmt.Sprint(i))
		layers := append(layerCases[0].layers, layerCases[1].layers...)
		if err := BuildFromLayers(t.Context(), layerReaders(t, layers), img); err != nil {
			t.Fatalf("BuildFromLayers: %v", err)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		fsckCheck(t, img)
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Errorf("two builds from the same layers differ; want identical images")
	}
}

func TestBuildFromLayersRootEntry(t *testing.T) {
	tests := []struct {
		name    string
		entry   te
		want    string
		wantUID uint32
		wantErr error
	}{
		{name: "dot slash", entry: tDir("./").mode(0o750).owner(5, 6), want: "drwxr-x---", wantUID: 5},
		{name: "slash", entry: tDir("/").mode(0o700), want: "drwx------"},
		{name: "file as root", entry: tFile(".", "x"), wantErr: ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "root.erofs")
			err := BuildFromLayers(t.Context(), layerReaders(t, [][]te{{tt.entry, tFile("f", "f")}}), img)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("BuildFromLayers() = %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("BuildFromLayers: %v", err)
			}
			fsckCheck(t, img)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			e, err := erofs.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := fs.Stat(e, ".")
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().String(); got != tt.want {
				t.Errorf("root mode = %s; want %s", got, tt.want)
			}
			if got := fi.Sys().(*erofs.Stat).UID; got != tt.wantUID {
				t.Errorf("root uid = %d; want %d", got, tt.wantUID)
			}
		})
	}
}

// TestBuildFromLayersStreams checks that file contents are spooled, not
// held: a layer with a 96 MiB file, streamed through a pipe, must not
// allocate anything near its size.
func TestBuildFromLayersStreams(t *testing.T) {
	const size = 96 << 20
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: size, Mode: 0o644, ModTime: epoch})
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for written := 0; err == nil && written < size; written += len(chunk) {
			_, err = tw.Write(chunk)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	img := filepath.Join(t.TempDir(), "big.erofs")
	err := BuildFromLayers(t.Context(), []io.Reader{pr}, img)
	runtime.ReadMemStats(&after)
	pr.CloseWithError(io.ErrClosedPipe) // unblock the writer if the build stopped early
	if werr := <-done; werr != nil && err == nil {
		t.Fatalf("tar writer: %v", werr)
	}
	if err != nil {
		t.Fatalf("BuildFromLayers: %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %d bytes for a %d-byte file; want under 16 MiB", alloc, size)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < size {
		t.Errorf("image is %d bytes; want at least %d", fi.Size(), size)
	}
	fsckCheck(t, img)
}
