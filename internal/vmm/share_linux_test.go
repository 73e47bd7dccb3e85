package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/passthrough"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtiofs"
)

// TestNewShare builds the virtio-fs devices NewFromSpec adds for shares,
// without a VM.
func TestNewShare(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		share   machine.Share
		wantErr error
	}{
		{"read-write", machine.Share{Tag: "work", Path: dir}, nil},
		{"read-only", machine.Share{Tag: "ro", Path: dir, ReadOnly: true}, nil},
		{"missing", machine.Share{Tag: "t", Path: filepath.Join(dir, "missing")}, os.ErrNotExist},
		{"not a directory", machine.Share{Tag: "t", Path: file}, syscall.ENOTDIR},
		{"tag too long", machine.Share{Tag: "0123456789012345678901234567890123456", Path: dir}, virtiofs.ErrConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev, fsys, err := NewShare(tc.share, nil)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("NewShare() = %v; want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer fsys.Close()
			defer dev.Close()
			if got := dev.Type(); got != virtio.VIRTIO_ID_FS {
				t.Errorf("Type() = %d; want %d", got, virtio.VIRTIO_ID_FS)
			}
			// The share's file system is the passthrough one, and
			// read-only reaches it: MKDIR fails with EROFS there.
			pfs, ok := fsys.(*passthrough.FS)
			if !ok {
				t.Fatalf("share served by %T; want *passthrough.FS", fsys)
			}
			var out fuse.EntryOut
			st := pfs.Mkdir(nil, &fuse.MkdirIn{InHeader: fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, Mode: 0o755}, "d", &out)
			if want := tc.share.ReadOnly; (st == fuse.Status(syscall.EROFS)) != want {
				t.Errorf("MKDIR status %v; want EROFS: %v", st, want)
			}
			tag := make([]byte, virtiofs.TagSize)
			dev.ReadConfig(0, tag)
			if want := tc.share.Tag; string(tag[:len(want)]) != want || (len(want) < len(tag) && tag[len(want)] != 0) {
				t.Errorf("config tag %q; want %q NUL-padded", tag, want)
			}
		})
	}
}
