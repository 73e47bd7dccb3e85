package virtiofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/goleak"

	"github.com/msb-go/msb/internal/passthrough"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiotest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FUSE opcodes (Linux include/uapi/linux/fuse.h).
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opSetattr     = 4
	opSymlink     = 6
	opMknod       = 8
	opMkdir       = 9
	opUnlink      = 10
	opRmdir       = 11
	opRename      = 12
	opLink        = 13
	opOpen        = 14
	opRead        = 15
	opWrite       = 16
	opInit        = 26
	opOpendir     = 27
	opGetlk       = 31
	opSetlkw      = 33
	opCreate      = 35
	opInterrupt   = 36
	opIoctl       = 39
	opBatchForget = 42
	rootID        = 1
)

var (
	R = virtiotest.Readable
	W = virtiotest.Writable
)

// encode serializes a go-fuse request struct (which embeds InHeader),
// appends tail and sets InHeader.Length.
func encode(t testing.TB, v any, tail ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
		t.Fatal(err)
	}
	for _, s := range tail {
		b.Write(s)
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	return out
}

func hdr(op uint32, unique, node uint64) fuse.InHeader {
	return fuse.InHeader{Opcode: op, Unique: unique, NodeId: node}
}

func name(s string) []byte { return append([]byte(s), 0) }

func initReq(t testing.TB, unique uint64) []byte {
	return encode(t, &fuse.InitIn{InHeader: hdr(opInit, unique, 0), Major: 7, Minor: 31, MaxReadAhead: 128 << 10})
}

// rig is a device with its hiprio queue and one request queue driven by
// virtiotest drivers, serving dir (which holds hello.txt) with the
// passthrough file system. dir is the directory "share" in outside, which
// also holds the file "sentinel" that no request may reach.
type rig struct {
	*virtiotest.Rig
	dev     *Device
	dir     string
	outside string
}

const sentinel = "sentinel: outside the share\n"

// newFS returns the file system the device tests serve, closed when the
// test ends (after the device, whose cleanup is registered later).
func newFS(t testing.TB, dir string, readOnly bool) fuse.RawFileSystem {
	t.Helper()
	fsys, err := passthrough.New(dir, passthrough.Options{ReadOnly: readOnly})
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Close() })
	return fsys
}

func newRig(t *testing.T, readOnly bool) *rig {
	t.Helper()
	outside := t.TempDir()
	dir := filepath.Join(outside, "share")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte(sentinel), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello, virtio-fs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, err := New(Config{Tag: "share", FS: newFS(t, dir, readOnly)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dev.Close()
		if n := dev.panics.Load(); n != 0 {
			t.Errorf("device recovered %d panics; want 0", n)
		}
	})
	return &rig{Rig: virtiotest.NewRig(t, dev, virtiotest.Options{QueueSize: 64, MemoryBytes: 8 << 20}), dev: dev, dir: dir, outside: outside}
}

// chain sends bufs on request queue qi and returns what the device wrote.
func (r *rig) chain(t *testing.T, qi int, bufs ...virtiotest.Buf) []byte {
	t.Helper()
	return r.Do(qi, bufs...).Data()
}

// do sends one FUSE request with a reply buffer of wlen bytes and returns
// the reply's status and body, checking the out-header.
func (r *rig) do(t *testing.T, req []byte, wlen uint32) (int32, []byte) {
	t.Helper()
	got := r.chain(t, 1, R(req), W(wlen))
	if len(got) < outHeaderSize {
		t.Fatalf("reply of %d bytes; want at least an out-header", len(got))
	}
	var oh fuse.OutHeader
	if err := binary.Read(bytes.NewReader(got), binary.LittleEndian, &oh); err != nil {
		t.Fatal(err)
	}
	if int(oh.Length) != len(got) {
		t.Errorf("out-header length %d; want used length %d", oh.Length, len(got))
	}
	if want := binary.LittleEndian.Uint64(req[inOffUnique:]); oh.Unique != want {
		t.Errorf("out-header unique %d; want %d", oh.Unique, want)
	}
	return oh.Status, got[outHeaderSize:]
}

// ok is do for a request that must succeed.
func (r *rig) ok(t *testing.T, req []byte, wlen uint32) []byte {
	t.Helper()
	st, body := r.do(t, req, wlen)
	if st != 0 {
		t.Fatalf("opcode %d: status %d; want 0", binary.LittleEndian.Uint32(req[4:]), st)
	}
	return body
}

func (r *rig) init(t *testing.T) {
	t.Helper()
	r.ok(t, initReq(t, 1), 256)
}

func (r *rig) lookup(t *testing.T, parent uint64, n string) uint64 {
	t.Helper()
	body := r.ok(t, encode(t, &struct{ fuse.InHeader }{hdr(opLookup, 2, parent)}, name(n)), 256)
	return binary.LittleEndian.Uint64(body[0:]) // EntryOut.NodeId
}

func (r *rig) open(t *testing.T, node uint64, flags uint32) uint64 {
	t.Helper()
	body := r.ok(t, encode(t, &fuse.OpenIn{InHeader: hdr(opOpen, 3, node), Flags: flags}), 256)
	return binary.LittleEndian.Uint64(body[0:]) // OpenOut.Fh
}

func TestConfig(t *testing.T) {
	fsys := fuse.NewDefaultRawFileSystem()
	dev, err := New(Config{Tag: "myshare", FS: fsys, RequestQueues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if got := dev.Type(); got != virtio.VIRTIO_ID_FS {
		t.Errorf("Type() = %d; want %d", got, virtio.VIRTIO_ID_FS)
	}
	if got := len(dev.QueueMaxSizes()); got != 3 {
		t.Errorf("%d queues; want 3 (hiprio + 2 request)", got)
	}
	cfg := make([]byte, configSize+4)
	dev.ReadConfig(0, cfg)
	want := make([]byte, configSize+4)
	copy(want, "myshare")
	want[TagSize] = 2
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config space (-want +got):\n%s", diff)
	}
	nq := make([]byte, 4)
	dev.ReadConfig(offNumRequestQueues, nq)
	if got := binary.LittleEndian.Uint32(nq); got != 2 {
		t.Errorf("num_request_queues = %d; want 2", got)
	}

	bad := []struct {
		name string
		cfg  Config
	}{
		{"no fs", Config{Tag: "t"}},
		{"empty tag", Config{FS: fsys}},
		{"long tag", Config{Tag: string(make([]byte, TagSize+1)), FS: fsys}},
		{"NUL in tag", Config{Tag: "a\x00b", FS: fsys}},
		{"bad UTF-8", Config{Tag: "\xff", FS: fsys}},
		{"too many queues", Config{Tag: "t", FS: fsys, RequestQueues: MaxRequestQueues + 1}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrConfig) {
				t.Errorf("New() = %v; want ErrConfig", err)
			}
		})
	}
}

func TestInit(t *testing.T) {
	r := newRig(t, false)
	body := r.ok(t, initReq(t, 7), 256)
	if len(body) < 24 {
		t.Fatalf("INIT reply body of %d bytes; want at least 24", len(body))
	}
	major := binary.LittleEndian.Uint32(body[0:])
	minor := binary.LittleEndian.Uint32(body[4:])
	maxWrite := binary.LittleEndian.Uint32(body[20:])
	if major != 7 || minor < fuseMinMinor || minor > 31 {
		t.Errorf("INIT reply version %d.%d; want 7.%d to 7.31", major, minor, fuseMinMinor)
	}
	if maxWrite == 0 || maxWrite > MaxWrite {
		t.Errorf("INIT reply max_write %d; want 1..%d", maxWrite, MaxWrite)
	}
	if r.IRQ.UsedCount(1) == 0 {
		t.Errorf("no used buffer notification on the request queue")
	}
}

func TestLookupOpenRead(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	node := r.lookup(t, rootID, "hello.txt")
	if node == 0 || node == rootID {
		t.Fatalf("LOOKUP node id %d; want a new node", node)
	}
	fh := r.open(t, node, syscall.O_RDONLY)
	tests := []struct {
		name      string
		off, size uint32
		want      string
	}{
		{"whole", 0, 4096, "hello, virtio-fs\n"},
		{"middle", 7, 6, "virtio"},
		{"past end", 100, 10, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := encode(t, &fuse.ReadIn{InHeader: hdr(opRead, 4, node), Fh: fh, Offset: uint64(tc.off), Size: tc.size})
			if got := r.ok(t, req, outHeaderSize+tc.size); string(got) != tc.want {
				t.Errorf("READ = %q; want %q", got, tc.want)
			}
		})
	}
	// A reply spread over several writable descriptors.
	req := encode(t, &fuse.ReadIn{InHeader: hdr(opRead, 5, node), Fh: fh, Size: 64})
	got := r.chain(t, 1, R(req[:20]), R(req[20:]), W(10), W(10), W(100))
	if want := "hello, virtio-fs\n"; len(got) != outHeaderSize+len(want) || string(got[outHeaderSize:]) != want {
		t.Errorf("scattered READ = %q; want header + %q", got, want)
	}
}

func TestCreateWrite(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	body := r.ok(t, encode(t, &fuse.CreateIn{InHeader: hdr(opCreate, 10, rootID), Flags: syscall.O_RDWR, Mode: 0o644}, name("new.txt")), 512)
	if len(body) < 128+16 {
		t.Fatalf("CREATE reply body of %d bytes; want EntryOut + OpenOut", len(body))
	}
	node := binary.LittleEndian.Uint64(body[0:])
	fh := binary.LittleEndian.Uint64(body[128:])
	data := []byte("written by the guest")
	// Header and payload in separate descriptors, as Linux sends them.
	req := encode(t, &fuse.WriteIn{InHeader: hdr(opWrite, 11, node), Fh: fh, Size: uint32(len(data))}, data)
	got := r.chain(t, 1, R(req[:80]), R(req[80:90]), R(req[90:]), W(64))
	if len(got) != outHeaderSize+8 || binary.LittleEndian.Uint32(got[4:]) != 0 {
		t.Fatalf("WRITE reply %x; want status 0 and WriteOut", got)
	}
	if n := binary.LittleEndian.Uint32(got[outHeaderSize:]); n != uint32(len(data)) {
		t.Errorf("WRITE wrote %d bytes; want %d", n, len(data))
	}
	host, err := os.ReadFile(filepath.Join(r.dir, "new.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(host, data) {
		t.Errorf("host file = %q; want %q", host, data)
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, true)
	r.init(t)
	node := r.lookup(t, rootID, "hello.txt")
	fh := r.open(t, node, syscall.O_RDONLY)
	erofs := -int32(syscall.EROFS)
	tests := []struct {
		name string
		req  []byte
	}{
		{"create", encode(t, &fuse.CreateIn{InHeader: hdr(opCreate, 20, rootID), Flags: syscall.O_RDWR, Mode: 0o644}, name("new.txt"))},
		{"write", encode(t, &fuse.WriteIn{InHeader: hdr(opWrite, 21, node), Fh: fh, Size: 3}, []byte("abc"))},
		{"open rdwr", encode(t, &fuse.OpenIn{InHeader: hdr(opOpen, 22, node), Flags: syscall.O_RDWR})},
		{"open trunc", encode(t, &fuse.OpenIn{InHeader: hdr(opOpen, 23, node), Flags: syscall.O_RDONLY | syscall.O_TRUNC})},
		{"mkdir", encode(t, &fuse.MkdirIn{InHeader: hdr(opMkdir, 24, rootID), Mode: 0o755}, name("d"))},
		{"mknod", encode(t, &fuse.MknodIn{InHeader: hdr(opMknod, 25, rootID), Mode: syscall.S_IFREG | 0o644}, name("n"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st, _ := r.do(t, tc.req, 512); st != erofs {
				t.Errorf("status %d; want %d (EROFS)", st, erofs)
			}
		})
	}
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("host dir has %d entries; want only hello.txt", len(entries))
	}
	if host, _ := os.ReadFile(filepath.Join(r.dir, "hello.txt")); string(host) != "hello, virtio-fs\n" {
		t.Errorf("host file changed to %q", host)
	}
}

// TestGuard checks the refusals the device makes whatever the file system,
// and that guest device nodes and FIFOs never become host ones.
func TestGuard(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	node := r.lookup(t, rootID, "hello.txt")
	fh := r.open(t, node, syscall.O_RDWR)
	lk := make([]byte, 48) // struct fuse_lk_in after the header
	binary.LittleEndian.PutUint64(lk[0:], fh)
	tests := []struct {
		name string
		req  []byte
		want syscall.Errno
	}{
		{"setlkw", encode(t, &struct{ fuse.InHeader }{hdr(opSetlkw, 32, node)}, lk), syscall.ENOSYS},
		{"getlk", encode(t, &struct{ fuse.InHeader }{hdr(opGetlk, 33, node)}, lk), syscall.ENOSYS},
		{"ioctl", encode(t, &struct{ fuse.InHeader }{hdr(opIoctl, 34, node)}, make([]byte, 32)), syscall.ENOSYS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st, _ := r.do(t, tc.req, 512); st != -int32(tc.want) {
				t.Errorf("status %d; want %d (%v)", st, -int32(tc.want), tc.want)
			}
		})
	}
	for i, n := range []struct {
		name string
		mode uint32
		rdev uint32
	}{{"null", syscall.S_IFCHR | 0o600, 1<<8 | 3}, {"sda", syscall.S_IFBLK | 0o600, 8 << 8}, {"fifo", syscall.S_IFIFO | 0o644, 0}} {
		r.do(t, encode(t, &fuse.MknodIn{InHeader: hdr(opMknod, uint64(35+i), rootID), Mode: n.mode, Rdev: n.rdev}, name(n.name)), 512)
		if fi, err := os.Lstat(filepath.Join(r.dir, n.name)); err == nil && !fi.Mode().IsRegular() {
			t.Errorf("MKNOD %s made a host %v; want a regular file or nothing", n.name, fi.Mode().Type())
		}
	}
	// Opening the guest's FIFO must not block the device.
	fifo := r.lookup(t, rootID, "fifo")
	r.open(t, fifo, syscall.O_RDONLY)
}

// TestEscape sends the security review's proof of concept (finding 1) and
// its relatives: names with ".." or '/' and a symlink to outside the share
// used as a parent. Each must fail, and nothing outside the share may be
// read, changed, created or removed. go-fuse's loopback file system, even
// behind the old guard, fails this test.
func TestEscape(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	hello := r.lookup(t, rootID, "hello.txt")
	r.ok(t, encode(t, &struct{ fuse.InHeader }{hdr(opSymlink, 2, rootID)}, name("esc"), name(r.outside)), 512)
	esc := r.lookup(t, rootID, "esc")
	lookup := func(parent uint64, n string) []byte {
		return encode(t, &struct{ fuse.InHeader }{hdr(opLookup, 10, parent)}, name(n))
	}
	rename := func(oldName, newName string) []byte {
		return encode(t, &struct {
			fuse.InHeader
			Newdir uint64
		}{hdr(opRename, 11, rootID), rootID}, name(oldName), name(newName))
	}
	create := func(parent uint64, n string) []byte {
		return encode(t, &fuse.CreateIn{InHeader: hdr(opCreate, 12, parent), Flags: syscall.O_RDWR, Mode: 0o644}, name(n))
	}
	tests := []struct {
		name string
		req  []byte
	}{
		{"lookup ../sentinel", lookup(rootID, "../sentinel")},
		{"lookup through share", lookup(rootID, "../share/../sentinel")},
		{"lookup absolute", lookup(rootID, "/etc/hostname")},
		{"lookup ..", lookup(rootID, "..")},
		{"create ../pwned", create(rootID, "../pwned")},
		{"create absolute", create(rootID, r.outside+"/pwned")},
		{"mkdir ../pwned", encode(t, &fuse.MkdirIn{InHeader: hdr(opMkdir, 13, rootID), Mode: 0o755}, name("../pwned"))},
		{"mknod ../pwned", encode(t, &fuse.MknodIn{InHeader: hdr(opMknod, 14, rootID), Mode: syscall.S_IFREG | 0o644}, name("../pwned"))},
		{"symlink ../pwned", encode(t, &struct{ fuse.InHeader }{hdr(opSymlink, 15, rootID)}, name("../pwned"), name("/"))},
		{"link ../pwned", encode(t, &fuse.LinkIn{InHeader: hdr(opLink, 16, rootID), Oldnodeid: hello}, name("../pwned"))},
		{"rename out", rename("hello.txt", "../pwned")},
		{"rename sentinel in", rename("../sentinel", "stolen")},
		{"rename with slash", rename("hello.txt", "sub/../../pwned")},
		{"unlink ../sentinel", encode(t, &struct{ fuse.InHeader }{hdr(opUnlink, 17, rootID)}, name("../sentinel"))},
		{"rmdir ../share", encode(t, &struct{ fuse.InHeader }{hdr(opRmdir, 18, rootID)}, name("../share"))},
		{"lookup via symlink", lookup(esc, "sentinel")},
		{"create via symlink", create(esc, "pwned")},
		{"opendir symlink", encode(t, &fuse.OpenIn{InHeader: hdr(opOpendir, 19, esc)})},
		{"unlink via symlink", encode(t, &struct{ fuse.InHeader }{hdr(opUnlink, 20, esc)}, name("sentinel"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if st, body := r.do(t, tc.req, 512); st == 0 {
				t.Errorf("status 0 (reply %x); want an error", body)
			}
		})
	}
	got, err := os.ReadFile(filepath.Join(r.outside, "sentinel"))
	if err != nil || string(got) != sentinel {
		t.Errorf("sentinel outside the share = %q, %v; want %q", got, err, sentinel)
	}
	entries, err := os.ReadDir(r.outside)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "share" && e.Name() != "sentinel" {
			t.Errorf("%s created outside the share", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, "hello.txt")); err != nil {
		t.Errorf("hello.txt left the share: %v", err)
	}
}

// TestSymlinkParent sends requests that name a symlink, or a directory
// replaced by one, as the parent directory: a file system that follows it
// on the host (go-fuse's loopback does) creates the file outside the share.
func TestSymlinkParent(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	outside := t.TempDir()
	symlink := func(unique uint64, n string) {
		r.ok(t, encode(t, &struct{ fuse.InHeader }{hdr(opSymlink, unique, rootID)}, name(n), name(outside)), 512)
	}
	symlink(60, "esc")
	esc := r.lookup(t, rootID, "esc")
	// A directory the guest holds a node for, then swaps for a symlink.
	r.ok(t, encode(t, &fuse.MkdirIn{InHeader: hdr(opMkdir, 61, rootID), Mode: 0o755}, name("d")), 512)
	d := r.lookup(t, rootID, "d")
	r.ok(t, encode(t, &struct{ fuse.InHeader }{hdr(opRmdir, 62, rootID)}, name("d")), 512)
	symlink(63, "d")
	for _, parent := range []struct {
		name string
		node uint64
	}{{"symlink", esc}, {"swapped dir", d}} {
		tests := []struct {
			name string
			req  []byte
		}{
			{"lookup", encode(t, &struct{ fuse.InHeader }{hdr(opLookup, 70, parent.node)}, name("x"))},
			{"create", encode(t, &fuse.CreateIn{InHeader: hdr(opCreate, 71, parent.node), Flags: syscall.O_RDWR, Mode: 0o644}, name("created"))},
			{"mkdir", encode(t, &fuse.MkdirIn{InHeader: hdr(opMkdir, 72, parent.node), Mode: 0o755}, name("dir"))},
			{"mknod", encode(t, &fuse.MknodIn{InHeader: hdr(opMknod, 73, parent.node), Mode: syscall.S_IFREG | 0o644}, name("node"))},
			{"symlink", encode(t, &struct{ fuse.InHeader }{hdr(opSymlink, 74, parent.node)}, name("link"), name("/"))},
			{"rename into", encode(t, &struct {
				fuse.InHeader
				Newdir uint64
			}{hdr(opRename, 75, rootID), parent.node}, name("hello.txt"), name("moved"))},
		}
		for _, tc := range tests {
			t.Run(parent.name+" "+tc.name, func(t *testing.T) {
				if st, _ := r.do(t, tc.req, 512); st == 0 {
					t.Errorf("status 0; want an error")
				}
			})
		}
	}
	// Operations on the symlink node itself that would follow it.
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.ok(t, encode(t, &struct{ fuse.InHeader }{hdr(opSymlink, 76, rootID)}, name("vlink"), name(victim)), 512)
	vlink := r.lookup(t, rootID, "vlink")
	r.ok(t, encode(t, &struct{ fuse.InHeader }{hdr(opSymlink, 77, rootID)}, name("dangling"), name(filepath.Join(outside, "new"))), 512)
	onLink := []struct {
		name string
		req  []byte
	}{
		{"truncate", encode(t, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: hdr(opSetattr, 79, vlink), Valid: fuse.FATTR_SIZE}})},
		{"opendir", encode(t, &fuse.OpenIn{InHeader: hdr(opOpendir, 80, esc)})},
		{"open for writing", encode(t, &fuse.OpenIn{InHeader: hdr(opOpen, 82, vlink), Flags: syscall.O_RDWR | syscall.O_TRUNC})},
		{"create over dangling symlink", encode(t, &fuse.CreateIn{InHeader: hdr(opCreate, 81, rootID), Flags: syscall.O_RDWR, Mode: 0o644}, name("dangling"))},
	}
	for _, tc := range onLink {
		t.Run("symlink node "+tc.name, func(t *testing.T) {
			if st, _ := r.do(t, tc.req, 512); st == 0 {
				t.Errorf("status 0; want an error")
			}
		})
	}
	// A mode change on the symlink node may succeed (it changes the
	// guest's view only), but never the target's host mode.
	r.do(t, encode(t, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: hdr(opSetattr, 78, vlink), Valid: fuse.FATTR_MODE, Mode: 0o777}}), 512)
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 4 {
		t.Errorf("file outside the share changed: %v, %v", fi, err)
	}
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "victim" {
			t.Errorf("%s created outside the share", e.Name())
		}
	}
	// Real directories still work.
	r.ok(t, encode(t, &fuse.MkdirIn{InHeader: hdr(opMkdir, 90, rootID), Mode: 0o755}, name("real")), 512)
	real := r.lookup(t, rootID, "real")
	r.ok(t, encode(t, &fuse.OpenIn{InHeader: hdr(opOpendir, 91, real)}), 512)
	r.ok(t, encode(t, &fuse.CreateIn{InHeader: hdr(opCreate, 92, real), Flags: syscall.O_RDWR, Mode: 0o644}, name("f")), 512)
	if _, err := os.Stat(filepath.Join(r.dir, "real", "f")); err != nil {
		t.Errorf("create in a real directory: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	getattr := encode(t, &struct {
		fuse.InHeader
		Flags, Dummy uint32
		Fh           uint64
	}{InHeader: hdr(opGetattr, 40, rootID)})
	hugeRead := encode(t, &fuse.ReadIn{InHeader: hdr(opRead, 41, rootID), Size: 1 << 31})
	unknown := encode(t, &struct{ fuse.InHeader }{hdr(200, 42, rootID)})
	shortInit := initReq(t, 43)[:inHeaderSize+4]
	tests := []struct {
		name string
		bufs []virtiotest.Buf
		// wantLen is the used length; wantErr the status in the
		// out-header when one was written.
		wantLen uint32
		wantErr syscall.Errno
	}{
		{"no readable", []virtiotest.Buf{W(64)}, outHeaderSize, syscall.EIO},
		{"short header", []virtiotest.Buf{R(getattr[:20]), W(64)}, outHeaderSize, syscall.EIO},
		{"short fixed part", []virtiotest.Buf{R(getattr[:inHeaderSize+4]), W(64)}, outHeaderSize, syscall.EIO},
		{"short header no room", []virtiotest.Buf{R(getattr[:20]), W(8)}, 0, 0},
		{"no writable", []virtiotest.Buf{R(getattr)}, 0, 0},
		{"writable smaller than out-header", []virtiotest.Buf{R(unknown), W(4)}, 0, 0},
		{"reply too small", []virtiotest.Buf{R(getattr), W(outHeaderSize + 10)}, outHeaderSize, syscall.EIO},
		{"read larger than reply", []virtiotest.Buf{R(hugeRead), W(4096)}, outHeaderSize, syscall.EIO},
		{"unknown opcode", []virtiotest.Buf{R(unknown), W(64)}, outHeaderSize, syscall.ENOSYS},
		{"short init", []virtiotest.Buf{R(shortInit), W(256)}, outHeaderSize, syscall.EIO},
		{"init major 8", []virtiotest.Buf{R(encode(t, &fuse.InitIn{InHeader: hdr(opInit, 44, 0), Major: 8, Minor: 31})), W(256)}, outHeaderSize, syscall.EIO},
		{"init minor 5", []virtiotest.Buf{R(encode(t, &fuse.InitIn{InHeader: hdr(opInit, 45, 0), Major: 7, Minor: 5})), W(256)}, outHeaderSize, syscall.EIO},
		{"unknown node", []virtiotest.Buf{R(encode(t, &struct{ fuse.InHeader }{hdr(opGetattr, 46, 9999)}, make([]byte, 16))), W(256)}, outHeaderSize, syscall.ESTALE},
		{"node 0", []virtiotest.Buf{R(encode(t, &struct{ fuse.InHeader }{hdr(opGetattr, 47, 0)}, make([]byte, 16))), W(256)}, outHeaderSize, syscall.ESTALE},
		{"request too large", []virtiotest.Buf{R(getattr), R(make([]byte, MaxRequestBytes)), W(64)}, outHeaderSize, syscall.E2BIG},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := r.chain(t, 1, tc.bufs...)
			if uint32(len(got)) != tc.wantLen {
				t.Fatalf("used length %d; want %d", len(got), tc.wantLen)
			}
			if tc.wantLen >= outHeaderSize {
				if st := int32(binary.LittleEndian.Uint32(got[4:])); st != -int32(tc.wantErr) {
					t.Errorf("status %d; want %d (%v)", st, -int32(tc.wantErr), tc.wantErr)
				}
			}
		})
	}
	// The device still serves requests afterwards.
	r.ok(t, getattr, 256)
}

// TestBadDescriptor sends a chain whose buffer lies outside guest memory:
// the chain is returned with nothing written and the queue keeps working.
func TestBadDescriptor(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	if err := r.Drivers[1].SetDesc(0, virtiotest.Desc{Addr: 1 << 40, Len: 64}); err != nil {
		t.Fatal(err)
	}
	if err := r.Drivers[1].Publish(0); err != nil {
		t.Fatal(err)
	}
	r.Notify(1)
	if rp := r.WaitUsed(1, 1)[0]; rp.ID != 0 || rp.Len != 0 {
		t.Errorf("used %+v; want id 0 len 0", rp.Used)
	}
	if err := r.IRQ.ResetErr(); err != nil {
		t.Errorf("NeedsReset(%v) for a bad chain; want the queue to go on", err)
	}
	r.lookup(t, rootID, "hello.txt")
}

func TestHiprio(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	node := r.lookup(t, rootID, "hello.txt")
	forget := encode(t, &fuse.ForgetIn{InHeader: hdr(opForget, 50, node), Nlookup: 1})
	batch := encode(t, &struct {
		fuse.InHeader
		Count, Dummy  uint32
		Node, Nlookup uint64
	}{InHeader: hdr(opBatchForget, 51, 0), Count: 1, Node: node, Nlookup: 1})
	interrupt := encode(t, &struct {
		fuse.InHeader
		Unique uint64
	}{InHeader: hdr(opInterrupt, 52, 0), Unique: 12345})
	tests := []struct {
		name string
		req  []byte
	}{
		{"forget", forget},
		{"batch forget", batch},
		{"interrupt unknown request", interrupt},
		{"garbage", []byte{1, 2, 3}},
		// Hostile FORGETs: more lookups than granted (go-fuse would
		// panic holding the inode's lock), the root, unknown nodes.
		{"forget underflow", encode(t, &fuse.ForgetIn{InHeader: hdr(opForget, 53, node), Nlookup: 1 << 40})},
		{"forget root", encode(t, &fuse.ForgetIn{InHeader: hdr(opForget, 54, rootID), Nlookup: 1 << 40})},
		{"forget unknown", encode(t, &fuse.ForgetIn{InHeader: hdr(opForget, 55, 9999), Nlookup: 1})},
		{"batch forget underflow", encode(t, &struct {
			fuse.InHeader
			Count, Dummy  uint32
			Node, Nlookup uint64
		}{InHeader: hdr(opBatchForget, 56, 0), Count: 1, Node: rootID, Nlookup: 1 << 40})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.chain(t, hiprioQueue, R(tc.req)); len(got) != 0 {
				t.Errorf("hiprio wrote %d bytes; want 0", len(got))
			}
		})
	}
	if r.IRQ.UsedCount(hiprioQueue) == 0 {
		t.Errorf("no used buffer notification on hiprio")
	}
	// The root and the file still answer, so no inode lock was left held.
	node = r.lookup(t, rootID, "hello.txt")
	r.open(t, node, syscall.O_RDONLY)
	r.lookup(t, rootID, "hello.txt")
}

// TestConcurrent keeps many requests in flight on one queue; completions
// may come back in any order.
func TestConcurrent(t *testing.T) {
	r := newRig(t, false)
	r.init(t)
	node := r.lookup(t, rootID, "hello.txt")
	fh := r.open(t, node, syscall.O_RDONLY)
	const n = 12
	heads := map[uint32]bool{}
	for i := range n {
		req := encode(t, &fuse.ReadIn{InHeader: hdr(opRead, uint64(100+i), node), Fh: fh, Size: 5})
		heads[uint32(r.Push(1, R(req), W(64)))] = true
	}
	for _, rp := range r.WaitUsed(1, n) {
		if !heads[rp.ID] || rp.Len != outHeaderSize+5 {
			t.Errorf("used %+v; want one of the %d heads with length %d", rp.Used, n, outHeaderSize+5)
		}
		delete(heads, rp.ID)
		got := rp.Data()
		if string(got[outHeaderSize:]) != "hello" {
			t.Errorf("READ = %q; want \"hello\"", got[outHeaderSize:])
		}
	}
}

// TestResetReactivate resets an active device, as a driver reset does, and
// activates it again on fresh queues, with two request queues.
func TestResetReactivate(t *testing.T) {
	dev, err := New(Config{Tag: "t", FS: newFS(t, t.TempDir(), false), RequestQueues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for round := range 2 {
		r := virtiotest.NewRig(t, dev, virtiotest.Options{MemoryBytes: 4 << 20})
		for qi := 1; qi < len(r.Drivers); qi++ {
			got := r.Do(qi, R(initReq(t, uint64(qi))), W(256)).Data()
			if len(got) < outHeaderSize+24 || binary.LittleEndian.Uint32(got[4:]) != 0 {
				t.Errorf("round %d queue %d: INIT reply %x; want status 0 and InitOut", round, qi, got)
			}
			if r.IRQ.UsedCount(qi) == 0 {
				t.Errorf("round %d: no used buffer notification on queue %d", round, qi)
			}
		}
		dev.Reset()
	}
}

func TestNotifyBeforeActivateAndAfterReset(t *testing.T) {
	dev, err := New(Config{Tag: "t", FS: fuse.NewDefaultRawFileSystem()})
	if err != nil {
		t.Fatal(err)
	}
	dev.QueueNotify(0) // must not block or panic
	dev.QueueNotify(99)
	dev.Reset()
	dev.QueueNotify(1)
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	dev.Wait()
}

// FuzzFSRequest sends fuzz input as one request chain, readable bytes split
// into two descriptors at split and wlen writable bytes, to a read-only
// passthrough share (so that random requests cannot modify the host), after
// an INIT. The device must not panic, must write no more than the chain
// holds, and a reply must carry a consistent out-header.
func FuzzFSRequest(f *testing.F) {
	seeds := [][]byte{
		initReq(f, 1),
		encode(f, &struct{ fuse.InHeader }{hdr(opLookup, 2, rootID)}, name("hello.txt")),
		encode(f, &fuse.OpenIn{InHeader: hdr(opOpen, 3, 2)}),
		encode(f, &fuse.ReadIn{InHeader: hdr(opRead, 4, 2), Size: 4096}),
		encode(f, &fuse.ReadIn{InHeader: hdr(opRead, 4, 2), Size: 1 << 31}),
		encode(f, &fuse.CreateIn{InHeader: hdr(opCreate, 5, rootID), Flags: syscall.O_RDWR}, name("x")),
		encode(f, &fuse.WriteIn{InHeader: hdr(opWrite, 6, 2), Size: 3}, []byte("abc")),
		encode(f, &fuse.ForgetIn{InHeader: hdr(opForget, 7, 2), Nlookup: 1}),
		{1, 2, 3},
	}
	for _, s := range seeds {
		f.Add(s, uint16(20), uint16(4096))
		f.Add(s, uint16(0), uint16(8))
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello"), 0o644); err != nil {
		f.Fatal(err)
	}
	dev, err := New(Config{Tag: "fuzz", FS: newFS(f, dir, true)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rd []byte, split, wlen uint16) {
		drv, q := virtiotest.NewQueue(t, 512<<10, 8, dev.Features())
		if len(rd) > 64<<10 {
			rd = rd[:64<<10]
		}
		bufs := virtiotest.SplitBufs(rd, int(split), uint32(wlen))
		if len(bufs) == 0 {
			return
		}
		c, err := virtiotest.PopChain(t, drv, q, bufs...)
		if err != nil {
			t.Fatalf("Pop = %v", err)
		}
		n := dev.handle(c)
		if n > uint32(wlen) {
			t.Fatalf("wrote %d bytes into %d writable", n, wlen)
		}
		if n > 0 {
			out := make([]byte, n)
			c.Writable.CopyTo(out, 0)
			if l := binary.LittleEndian.Uint32(out); l != n {
				t.Errorf("out-header length %d; want used length %d", l, n)
			}
		}
		if p := dev.panics.Load(); p != 0 {
			t.Fatalf("device recovered %d panics", p)
		}
	})
}

// TestShortRequestsNotLogged checks inSizes against go-fuse: go-fuse logs
// a request shorter than its opcode's fixed part to the process-wide
// logger ("Short read"), which a guest could flood, so the device must
// refuse every such request itself; and a request one byte short of an
// inSizes entry must be one go-fuse would refuse too, so the device turns
// away no request go-fuse would serve.
func TestShortRequestsNotLogged(t *testing.T) {
	dir := t.TempDir()
	dev, err := New(Config{Tag: "t", FS: newFS(t, dir, true)})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	var logged bytes.Buffer
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)
	var drv *virtiotest.Driver
	var q *virtio.Queue
	newQueue := func() {
		t.Helper()
		mem, err := virtiotest.NewMemory(0x10000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if drv, err = mem.NewDriver(256); err != nil {
			t.Fatal(err)
		}
		if q, err = drv.Queue(dev.Features()); err != nil {
			t.Fatal(err)
		}
	}
	send := func(req []byte) {
		t.Helper()
		if _, err := drv.AddChain(R(req), W(64)); err != nil {
			t.Fatal(err)
		}
		c, ok, err := q.Pop()
		if !ok || err != nil {
			t.Fatalf("Pop = %v, %v", ok, err)
		}
		dev.handle(c)
	}
	req := func(op uint32, n int) []byte {
		b := make([]byte, n)
		binary.LittleEndian.PutUint32(b[0:], uint32(n))
		binary.LittleEndian.PutUint32(b[inOffOpcode:], op)
		binary.LittleEndian.PutUint64(b[inOffUnique:], 1)
		return b
	}
	for op := uint32(0); op < 64; op++ {
		if op == fuseOpInit {
			continue
		}
		want := inHeaderSize
		if op < uint32(len(inSizes)) && inSizes[op] != 0 {
			want = int(inSizes[op])
			logged.Reset()
			dev.server.HandleRequest([][]byte{req(op, want-1)}, [][]byte{make([]byte, 4096)})
			if !strings.Contains(logged.String(), "Short read") {
				t.Errorf("opcode %d: go-fuse accepts %d bytes; inSizes %d is too large", op, want-1, want)
			}
		}
		logged.Reset()
		newQueue()
		for n := inHeaderSize; n <= want; n++ {
			send(req(op, n))
		}
		if logged.Len() != 0 {
			first, _, _ := strings.Cut(logged.String(), "\n")
			t.Errorf("opcode %d: %d lines in the process-wide log, first %.80q", op, strings.Count(logged.String(), "\n"), first)
		}
	}
}
