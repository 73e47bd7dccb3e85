package virtioblk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFileBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(diskSectors * 512); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, Config{Backend: File{f}})
	if got := r.do(t, false, R(hdr(VIRTIO_BLK_T_DISCARD, 0)), R(seg(0, 8, 0)), W(1)); !bytes.Equal(got, []byte{0}) {
		t.Fatalf("discard status = %x; want OK", got)
	}
	got := r.do(t, false, R(hdr(VIRTIO_BLK_T_IN, 0)), W(4096), W(1))
	if diff := cmp.Diff(okStatus(make([]byte, 4096)), got); diff != "" {
		t.Fatalf("read after discard (-want +got):\n%s", diff)
	}
}
