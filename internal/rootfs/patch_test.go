package rootfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// imgEntry is what debugfs reports about one path in an upper image.
type imgEntry struct {
	Type string // debugfs "Type:": regular, directory, symlink, character special
	Mode string // octal permission bits as debugfs prints them
	UID  int
	GID  int
	Link string // symlink target
	Dev  string // major:minor of a device
	Data string // content of a regular file
}

var (
	reType  = regexp.MustCompile(`Type: ([a-z ]+?)\s+Mode:\s+(\d+)`)
	reOwner = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	reFast  = regexp.MustCompile(`Fast link dest: "(.*)"`)
	reDev   = regexp.MustCompile(`Device major/minor number: ([0-9a-f]+:[0-9a-f]+)`)
)

// statImage reads path p (relative to the image root) back with debugfs,
// an independent ext4 implementation.
func statImage(t *testing.T, img, p string) imgEntry {
	t.Helper()
	out := debugfs(t, img, "stat "+p)
	m := reType.FindStringSubmatch(out)
	o := reOwner.FindStringSubmatch(out)
	if m == nil || o == nil {
		t.Fatalf("debugfs stat %s: got\n%s\nwant an inode", p, out)
	}
	e := imgEntry{Type: m[1], Mode: m[2]}
	e.UID, _ = strconv.Atoi(o[1])
	e.GID, _ = strconv.Atoi(o[2])
	switch e.Type {
	case "symlink":
		if f := reFast.FindStringSubmatch(out); f != nil {
			e.Link = f[1]
		} else {
			e.Link = dumpImage(t, img, p)
		}
	case "character special":
		if d := reDev.FindStringSubmatch(out); d != nil {
			e.Dev = d[1]
		}
	case "regular":
		e.Data = dumpImage(t, img, p)
	}
	return e
}

// dumpImage returns the data of p in the image, via debugfs dump.
func dumpImage(t *testing.T, img, p string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dump")
	debugfs(t, img, "dump "+p+" "+out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read dump of %s: %v", p, err)
	}
	return string(b)
}

func newUpper(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "upper.ext4")
	if err := CreateUpper(t.Context(), img, size); err != nil {
		t.Fatalf("CreateUpper: %v", err)
	}
	return img
}

// patchBytes is a deterministic, incompressible-looking payload larger
// than copyBufSize, so a copy takes several writes and extents.
func patchBytes(n int) []byte {
	b := make([]byte, n)
	var x uint32 = 2463534242
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func writeHost(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestApplyPatches(t *testing.T) {
	src := t.TempDir()
	big := patchBytes(3<<20 + 17)
	writeHost(t, filepath.Join(src, "big.bin"), big, 0o600)
	writeHost(t, filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	tree := filepath.Join(src, "tree")
	writeHost(t, filepath.Join(tree, "f1"), []byte("one\n"), 0o640)
	writeHost(t, filepath.Join(tree, "sub/f2"), []byte("two\n"), 0o600)
	if err := os.Chmod(filepath.Join(tree, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../f1", filepath.Join(tree, "sub/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tree, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	treeLink := filepath.Join(src, "tree-link")
	if err := os.Symlink("tree", treeLink); err != nil {
		t.Fatal(err)
	}
	longTarget := "/usr/lib/" + strings.Repeat("long-", 30) + "target"

	rootDir := imgEntry{Type: "directory", Mode: "0755"}
	reg := func(data, mode string, uid, gid int) imgEntry {
		return imgEntry{Type: "regular", Mode: mode, UID: uid, GID: gid, Data: data}
	}
	whiteout := imgEntry{Type: "character special", Mode: "0000", Dev: "00:00"}
	var manyRemoves []Patch
	manyWant := map[string]imgEntry{}
	for i := range 120 {
		p := "/var/lib/many/file-with-a-longish-name-" + strconv.Itoa(i)
		manyRemoves = append(manyRemoves, Patch{Kind: PatchRemove, Path: p})
		manyWant["upper"+p] = whiteout
	}
	manyWant["upper/var/lib/many"] = rootDir

	tests := []struct {
		name    string
		size    int64 // 0: 64 MiB (1K blocks)
		patches []Patch
		want    map[string]imgEntry
	}{
		{
			name:    "text",
			patches: []Patch{{Kind: PatchText, Path: "/etc/motd", Data: []byte("hello\n")}},
			want: map[string]imgEntry{
				"upper/etc":      rootDir,
				"upper/etc/motd": reg("hello\n", "0644", 0, 0),
			},
		},
		{
			name:    "text empty, uncleaned path",
			patches: []Patch{{Kind: PatchText, Path: "//etc/./empty/"}},
			want:    map[string]imgEntry{"upper/etc/empty": reg("", "0644", 0, 0)},
		},
		{
			name:    "nested parents",
			patches: []Patch{{Kind: PatchText, Path: "/a/b/c/f.txt", Data: []byte("x"), UID: 7, GID: 8}},
			want: map[string]imgEntry{
				"upper/a":           rootDir,
				"upper/a/b":         rootDir,
				"upper/a/b/c":       rootDir,
				"upper/a/b/c/f.txt": reg("x", "0644", 7, 8),
			},
		},
		{
			name: "mode and owner",
			patches: []Patch{
				{Kind: PatchText, Path: "/usr/bin/suid", Data: []byte("#!"), Mode: 0o750 | os.ModeSetuid, UID: 1000, GID: 100},
				{Kind: PatchText, Path: "/root/.secret", Data: []byte("s"), Mode: 0o600},
			},
			want: map[string]imgEntry{
				"upper/usr/bin/suid": reg("#!", "04750", 1000, 100),
				"upper/root/.secret": reg("s", "0600", 0, 0),
			},
		},
		{
			name: "copy_file streams a multi-MiB file",
			patches: []Patch{
				{Kind: PatchCopyFile, Path: "/data/big.bin", Source: filepath.Join(src, "big.bin")},
				{Kind: PatchCopyFile, Path: "/usr/local/bin/run.sh", Source: filepath.Join(src, "run.sh"), Mode: 0o755, UID: 1, GID: 2},
			},
			want: map[string]imgEntry{
				"upper/data/big.bin":         reg(string(big), "0600", 0, 0), // the source's mode, as cp keeps it,
				"upper/usr/local/bin/run.sh": reg("#!/bin/sh\necho hi\n", "0755", 1, 2),
			},
		},
		{
			name: "copy_dir with a symlink",
			patches: []Patch{
				{Kind: PatchCopyDir, Path: "/opt/app", Source: tree, UID: 1000, GID: 1000},
				{Kind: PatchCopyDir, Path: "/opt/via-link", Source: treeLink, Mode: 0o700},
			},
			want: map[string]imgEntry{
				"upper/opt":              rootDir,
				"upper/opt/app":          {Type: "directory", Mode: "0755", UID: 1000, GID: 1000},
				"upper/opt/app/f1":       reg("one\n", "0640", 1000, 1000),
				"upper/opt/app/sub":      {Type: "directory", Mode: "0750", UID: 1000, GID: 1000},
				"upper/opt/app/sub/f2":   reg("two\n", "0600", 1000, 1000),
				"upper/opt/app/sub/link": {Type: "symlink", Mode: "0777", UID: 1000, GID: 1000, Link: "../f1"},
				"upper/opt/app/empty":    {Type: "directory", Mode: "0700", UID: 1000, GID: 1000},
				"upper/opt/via-link":     {Type: "directory", Mode: "0700"},
				"upper/opt/via-link/f1":  reg("one\n", "0640", 0, 0),
				"upper/opt/via-link/sub": {Type: "directory", Mode: "0750"},
			},
		},
		{
			name: "symlink",
			patches: []Patch{
				{Kind: PatchSymlink, Path: "/usr/bin/py", Target: "python3"},
				{Kind: PatchSymlink, Path: "/usr/bin/owned", Target: "/bin/sh", UID: 1000, GID: 50},
				{Kind: PatchSymlink, Path: "/usr/bin/long", Target: longTarget},
			},
			want: map[string]imgEntry{
				// The parent, chowned for the owned symlink's creation,
				// is root's again.
				"upper/usr/bin":       rootDir,
				"upper/usr/bin/py":    {Type: "symlink", Mode: "0777", Link: "python3"},
				"upper/usr/bin/owned": {Type: "symlink", Mode: "0777", UID: 1000, GID: 50, Link: "/bin/sh"},
				"upper/usr/bin/long":  {Type: "symlink", Mode: "0777", Link: longTarget},
			},
		},
		{
			name: "mkdir",
			patches: []Patch{
				{Kind: PatchMkdir, Path: "/data", Mode: 0o700, UID: 1000, GID: 1000},
				{Kind: PatchMkdir, Path: "/tmp", Mode: 0o777 | os.ModeSticky},
				{Kind: PatchMkdir, Path: "/x/y"},
				{Kind: PatchMkdir, Path: "/x", Mode: 0o711}, // existing: attributes updated
			},
			want: map[string]imgEntry{
				"upper/data": {Type: "directory", Mode: "0700", UID: 1000, GID: 1000},
				"upper/tmp":  {Type: "directory", Mode: "01777"},
				"upper/x":    {Type: "directory", Mode: "0711"},
				"upper/x/y":  rootDir,
			},
		},
		{
			name:    "remove",
			patches: []Patch{{Kind: PatchRemove, Path: "/etc/gone"}},
			want:    map[string]imgEntry{"upper/etc": rootDir, "upper/etc/gone": whiteout},
		},
		{
			name: "replace in order",
			patches: []Patch{
				{Kind: PatchRemove, Path: "/etc/a"},
				{Kind: PatchText, Path: "/etc/a", Data: []byte("back")},
				{Kind: PatchText, Path: "/etc/b", Data: []byte("first")},
				{Kind: PatchRemove, Path: "/etc/b"},
				{Kind: PatchText, Path: "/etc/c", Data: []byte("first")},
				{Kind: PatchText, Path: "/etc/c", Data: []byte("second"), Mode: 0o600},
				{Kind: PatchText, Path: "/etc/d", Data: []byte("file")},
				{Kind: PatchSymlink, Path: "/etc/d", Target: "c"},
			},
			want: map[string]imgEntry{
				"upper/etc/a": reg("back", "0644", 0, 0),
				"upper/etc/b": whiteout,
				"upper/etc/c": reg("second", "0600", 0, 0),
				"upper/etc/d": {Type: "symlink", Mode: "0777", Link: "c"},
			},
		},
		{
			name: "copy_dir replaces earlier patches below it",
			patches: []Patch{
				{Kind: PatchText, Path: "/opt/app/f1", Data: []byte("replaced")},
				{Kind: PatchRemove, Path: "/opt/app/sub/link"},
				{Kind: PatchText, Path: "/opt/app/extra", Data: []byte("kept")},
				{Kind: PatchCopyDir, Path: "/opt/app", Source: tree},
			},
			want: map[string]imgEntry{
				"upper/opt/app/f1":       reg("one\n", "0640", 0, 0),
				"upper/opt/app/sub/link": {Type: "symlink", Mode: "0777", Link: "../f1"},
				"upper/opt/app/extra":    reg("kept", "0644", 0, 0),
			},
		},
		{
			name:    "many whiteouts in one directory",
			patches: manyRemoves,
			want:    manyWant,
		},
		{
			name: "default size (4K blocks)",
			size: DefaultUpperSize,
			patches: []Patch{
				{Kind: PatchText, Path: "/etc/motd", Data: []byte("hello\n")},
				{Kind: PatchRemove, Path: "/etc/gone"},
				{Kind: PatchSymlink, Path: "/etc/l", Target: "motd", UID: 3, GID: 3},
				{Kind: PatchCopyFile, Path: "/data/big.bin", Source: filepath.Join(src, "big.bin")},
			},
			want: map[string]imgEntry{
				"upper/etc/motd":     reg("hello\n", "0644", 0, 0),
				"upper/etc/gone":     whiteout,
				"upper/etc/l":        {Type: "symlink", Mode: "0777", UID: 3, GID: 3, Link: "motd"},
				"upper/data/big.bin": reg(string(big), "0600", 0, 0),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size == 0 {
				size = 64 << 20
			}
			img := newUpper(t, size)
			if err := ApplyPatches(t.Context(), img, tt.patches); err != nil {
				t.Fatalf("ApplyPatches: %v", err)
			}
			e2fsckClean(t, img)
			got := map[string]imgEntry{}
			for p := range tt.want {
				got[p] = statImage(t, img, p)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("image entries (-want +got):\n%s", diff)
			}
			// CreateUpper's directories are untouched.
			for _, d := range []string{"upper", "work"} {
				if got := statImage(t, img, d); got != rootDir {
					t.Errorf("%s = %+v; want %+v", d, got, rootDir)
				}
			}
		})
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestApplyPatchesInvalid(t *testing.T) {
	src := t.TempDir()
	writeHost(t, filepath.Join(src, "file"), []byte("f"), 0o644)
	withFifo := filepath.Join(src, "fifo-tree")
	writeHost(t, filepath.Join(withFifo, "ok"), []byte("ok"), 0o644)
	if err := unix.Mkfifo(filepath.Join(withFifo, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(src, "tree")
	writeHost(t, filepath.Join(tree, "ok"), []byte("ok"), 0o644)
	good := Patch{Kind: PatchText, Path: "/etc/motd", Data: []byte("should not be written")}
	tests := []struct {
		name    string
		patches []Patch
		want    error
	}{
		{"relative path", []Patch{good, {Kind: PatchText, Path: "etc/motd"}}, ErrBadPatch},
		{"empty path", []Patch{good, {Kind: PatchMkdir}}, ErrBadPatch},
		{"root", []Patch{good, {Kind: PatchMkdir, Path: "/"}}, ErrBadPatch},
		{"root uncleaned", []Patch{good, {Kind: PatchMkdir, Path: "/./"}}, ErrBadPatch},
		{"dotdot", []Patch{good, {Kind: PatchText, Path: "/etc/../../x"}}, ErrBadPatch},
		{"dotdot inside", []Patch{good, {Kind: PatchText, Path: "/etc/../x"}}, ErrBadPatch},
		{"NUL in path", []Patch{good, {Kind: PatchText, Path: "/etc/a\x00b"}}, ErrBadPatch},
		{"long name", []Patch{good, {Kind: PatchText, Path: "/" + strings.Repeat("n", 256)}}, ErrBadPatch},
		{"unknown kind", []Patch{good, {Kind: "append", Path: "/etc/x"}}, ErrBadPatch},
		{"copy of a missing source", []Patch{good, {Kind: PatchCopyFile, Path: "/x", Source: filepath.Join(src, "missing")}}, ErrBadPatch},
		{"copy_file without source", []Patch{good, {Kind: PatchCopyFile, Path: "/x"}}, ErrBadPatch},
		{"copy_file of a directory", []Patch{good, {Kind: PatchCopyFile, Path: "/x", Source: src}}, ErrBadPatch},
		{"copy_dir of a missing source", []Patch{good, {Kind: PatchCopyDir, Path: "/x", Source: filepath.Join(src, "missing")}}, ErrBadPatch},
		{"copy_dir of a file", []Patch{good, {Kind: PatchCopyDir, Path: "/x", Source: filepath.Join(src, "file")}}, ErrBadPatch},
		{"copy_dir of a tree with a fifo", []Patch{good, {Kind: PatchCopyDir, Path: "/x", Source: withFifo}}, ErrUnsupported},
		{"symlink without target", []Patch{good, {Kind: PatchSymlink, Path: "/x"}}, ErrBadPatch},
		{"symlink target too long", []Patch{good, {Kind: PatchSymlink, Path: "/x", Target: strings.Repeat("t", 4096)}}, ErrBadPatch},
		{"negative uid", []Patch{good, {Kind: PatchText, Path: "/x", UID: -1}}, ErrBadPatch},
		{"type bits in mode", []Patch{good, {Kind: PatchText, Path: "/x", Mode: os.ModeDir | 0o755}}, ErrBadPatch},
		{"under an earlier file", []Patch{good, {Kind: PatchText, Path: "/etc/motd/x"}}, ErrBadPatch},
		{"under an earlier whiteout", []Patch{good, {Kind: PatchRemove, Path: "/a"}, {Kind: PatchMkdir, Path: "/a/b"}}, ErrBadPatch},
		{"file over an earlier directory", []Patch{good, {Kind: PatchMkdir, Path: "/d"}, {Kind: PatchText, Path: "/d"}}, ErrBadPatch},
		{"remove of an earlier tree", []Patch{good, {Kind: PatchMkdir, Path: "/d/e"}, {Kind: PatchRemove, Path: "/d"}}, ErrBadPatch},
		{"file over a copy_dir entry", []Patch{good, {Kind: PatchCopyDir, Path: "/t", Source: tree}, {Kind: PatchText, Path: "/t/ok"}}, ErrBadPatch},
		{"copy_dir with a file over an earlier directory", []Patch{good, {Kind: PatchMkdir, Path: "/t/ok/x"}, {Kind: PatchCopyDir, Path: "/t", Source: tree}}, ErrBadPatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := newUpper(t, 16<<20)
			before := fileSum(t, img)
			err := ApplyPatches(t.Context(), img, tt.patches)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ApplyPatches = %v; want %v", err, tt.want)
			}
			if after := fileSum(t, img); after != before {
				t.Errorf("image changed by a rejected patch set")
			}
		})
	}
}

func TestApplyPatchesBadImage(t *testing.T) {
	dir := t.TempDir()
	notExt4 := filepath.Join(dir, "zeros")
	if err := os.WriteFile(notExt4, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		img  string
	}{
		{"missing", filepath.Join(dir, "missing")},
		{"directory", dir},
		{"not ext4", notExt4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ApplyPatches(t.Context(), tt.img, []Patch{{Kind: PatchMkdir, Path: "/x"}})
			if err == nil {
				t.Fatalf("ApplyPatches(%s) = nil; want error", tt.img)
			}
		})
	}
}

func TestApplyPatchesCanceled(t *testing.T) {
	img := newUpper(t, 16<<20)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := ApplyPatches(ctx, img, []Patch{{Kind: PatchMkdir, Path: "/x"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyPatches(canceled) = %v; want %v", err, context.Canceled)
	}
}

// TestApplyPatchesMetadataCsum runs the whiteout rewrite on an image with
// metadata_csum (CreateUpper's images have none), where the inode and the
// directory block checksums must be recomputed for e2fsck to pass.
func TestApplyPatchesMetadataCsum(t *testing.T) {
	img := filepath.Join(t.TempDir(), "csum.ext4")
	const size = 64 << 20
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	fsys, err := ext4.Create(file.New(f, false), size, 0, 0, &ext4.Params{
		Features: []ext4.FeatureOpt{
			ext4.WithFeatureReservedGDTBlocksForExpansion(false),
			ext4.WithFeatureMetadataChecksums(true),
		},
	})
	if err != nil {
		t.Fatalf("mkfs: %v", err)
	}
	if err := fsys.Mkdir("upper"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if out := debugfs(t, img, "features"); !strings.Contains(out, "metadata_csum") {
		t.Fatalf("features: got %s; want metadata_csum", out)
	}
	e2fsckClean(t, img)
	patches := []Patch{
		{Kind: PatchRemove, Path: "/etc/gone"},
		{Kind: PatchText, Path: "/etc/motd", Data: []byte("m")},
		{Kind: PatchRemove, Path: "/gone-too"},
	}
	if err := ApplyPatches(t.Context(), img, patches); err != nil {
		t.Fatalf("ApplyPatches: %v", err)
	}
	e2fsckClean(t, img)
	for _, p := range []string{"upper/etc/gone", "upper/gone-too"} {
		got := statImage(t, img, p)
		want := imgEntry{Type: "character special", Mode: "0000", Dev: "00:00"}
		if got != want {
			t.Errorf("%s = %+v; want %+v", p, got, want)
		}
	}
}

func TestCRC32c(t *testing.T) {
	// RFC 3720 B.4 check value of CRC32C over "123456789" (with the
	// standard inversions, which crc32c leaves to the caller).
	if got, want := ^crc32c(^uint32(0), []byte("123456789")), uint32(0xE3069283); got != want {
		t.Errorf("crc32c check value = %#x; want %#x", got, want)
	}
}

// rawSeeds builds extent-tree and directory-block seeds: a valid leaf, an
// index node pointing at itself, and a truncated header.
func rawSeeds() [][]byte {
	le := binary.LittleEndian
	leaf := make([]byte, 60)
	le.PutUint16(leaf[0:], 0xF30A)
	le.PutUint16(leaf[2:], 1)
	le.PutUint16(leaf[4:], 4)
	le.PutUint16(leaf[16:], 2) // 2 blocks
	le.PutUint32(leaf[20:], 1) // at block 1
	loop := make([]byte, 2048)
	le.PutUint16(loop[0:], 0xF30A)
	le.PutUint16(loop[2:], 4)
	le.PutUint16(loop[4:], 4)
	le.PutUint16(loop[6:], 1) // depth 1
	for i := range 4 {
		le.PutUint32(loop[12+12*i+4:], 0) // child block 0: itself
	}
	return [][]byte{leaf, loop, leaf[:8]}
}

func FuzzExtentBlocks(f *testing.F) {
	for _, s := range rawSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		r := &rawExt4{f: bytes.NewReader(img), blockSize: 1024}
		var nodes int
		blocks, err := r.extentBlocks(img[:min(len(img), 60)], 0, &nodes)
		if err == nil && len(blocks) > maxDirBlocks {
			t.Errorf("%d blocks; want at most %d", len(blocks), maxDirBlocks)
		}
		if nodes > maxExtentNodes+1 {
			t.Errorf("read %d extent nodes; want at most %d", nodes, maxExtentNodes)
		}
	})
}

func FuzzFindDirent(f *testing.F) {
	blk := make([]byte, 64)
	binary.LittleEndian.PutUint32(blk[0:], 12)
	binary.LittleEndian.PutUint16(blk[4:], 16)
	blk[6] = 4
	copy(blk[8:], "gone")
	binary.LittleEndian.PutUint16(blk[20:], 44)
	f.Add(blk, "gone", uint32(12))
	f.Add(blk[:10], "gone", uint32(12))
	f.Fuzz(func(t *testing.T, blk []byte, name string, ino uint32) {
		pos, ok := findDirent(blk, name, ino)
		if ok && (pos+8+len(name) > len(blk) || string(blk[pos+8:pos+8+len(name)]) != name) {
			t.Errorf("findDirent = %d for %q in a %d-byte block", pos, name, len(blk))
		}
	})
}

// TestApplyPatchesTwice patches an image that was patched before, as when
// a sandbox's upper is reused: new entries and directory attributes can be
// added and a whiteout repeated, but an existing file, symlink or whiteout
// cannot be replaced (go-diskfs cannot remove entries) and such a patch
// set is refused before anything is written.
func TestApplyPatchesTwice(t *testing.T) {
	img := newUpper(t, 64<<20)
	first := []Patch{
		{Kind: PatchText, Path: "/etc/motd", Data: []byte("first")},
		{Kind: PatchRemove, Path: "/etc/gone"},
		{Kind: PatchSymlink, Path: "/etc/l", Target: "motd"},
	}
	if err := ApplyPatches(t.Context(), img, first); err != nil {
		t.Fatalf("first ApplyPatches: %v", err)
	}
	second := []Patch{
		{Kind: PatchText, Path: "/etc/new", Data: []byte("second")},
		{Kind: PatchRemove, Path: "/etc/gone"},
		{Kind: PatchRemove, Path: "/etc/gone2"},
		{Kind: PatchMkdir, Path: "/etc", Mode: 0o750},
	}
	if err := ApplyPatches(t.Context(), img, second); err != nil {
		t.Fatalf("second ApplyPatches: %v", err)
	}
	e2fsckClean(t, img)
	whiteout := imgEntry{Type: "character special", Mode: "0000", Dev: "00:00"}
	want := map[string]imgEntry{
		"upper/etc":       {Type: "directory", Mode: "0750"},
		"upper/etc/motd":  {Type: "regular", Mode: "0644", Data: "first"},
		"upper/etc/new":   {Type: "regular", Mode: "0644", Data: "second"},
		"upper/etc/gone":  whiteout,
		"upper/etc/gone2": whiteout,
		"upper/etc/l":     {Type: "symlink", Mode: "0777", Link: "motd"},
	}
	got := map[string]imgEntry{}
	for p := range want {
		got[p] = statImage(t, img, p)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image entries (-want +got):\n%s", diff)
	}

	refused := []struct {
		name  string
		patch Patch
		want  error
	}{
		{"text over file", Patch{Kind: PatchText, Path: "/etc/motd"}, ErrUnsupported},
		{"symlink over symlink", Patch{Kind: PatchSymlink, Path: "/etc/l", Target: "x"}, ErrUnsupported},
		{"remove of a file", Patch{Kind: PatchRemove, Path: "/etc/motd"}, ErrUnsupported},
		{"text over whiteout", Patch{Kind: PatchText, Path: "/etc/gone"}, ErrUnsupported},
		{"mkdir over file", Patch{Kind: PatchMkdir, Path: "/etc/motd"}, ErrBadPatch},
		{"under a file", Patch{Kind: PatchText, Path: "/etc/motd/x"}, ErrBadPatch},
		{"file over directory", Patch{Kind: PatchText, Path: "/etc"}, ErrBadPatch},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := fileSum(t, img)
			patches := []Patch{{Kind: PatchText, Path: "/fresh", Data: []byte("not written")}, tt.patch}
			if err := ApplyPatches(t.Context(), img, patches); !errors.Is(err, tt.want) {
				t.Fatalf("ApplyPatches = %v; want %v", err, tt.want)
			}
			if fileSum(t, img) != before {
				t.Errorf("image changed by a refused patch set")
			}
		})
	}
}

// TestApplyPatchesNeedsRecovery refuses an image whose journal a guest left
// to be replayed.
func TestApplyPatchesNeedsRecovery(t *testing.T) {
	img := newUpper(t, 16<<20)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	if _, err := f.ReadAt(b[:], sbOffset+sbFeatureIncompat); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(b[:], binary.LittleEndian.Uint32(b[:])|incompatRecover)
	if _, err := f.WriteAt(b[:], sbOffset+sbFeatureIncompat); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, img)
	err = ApplyPatches(t.Context(), img, []Patch{{Kind: PatchMkdir, Path: "/x"}})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ApplyPatches = %v; want %v", err, ErrUnsupported)
	}
	if fileSum(t, img) != before {
		t.Errorf("image changed")
	}
}
