package image

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/msb-go/msb/internal/rootfs"
)

// TestPullSizeCap: an image whose blobs add up to more than MaxPullBytes
// is refused before any layer is downloaded.
func TestPullSizeCap(t *testing.T) {
	reg := newTestRegistry(t, false)
	ref := reg.Host + "/big/img:v"
	push(t, ref, randomImage(t, 4096, 3))
	reg.reset()
	s := newStore(t, Options{MaxPullBytes: 8192})
	_, err := s.Pull(t.Context(), ref, "", nil)
	t.Logf("Pull: %v", err)
	var le *rootfs.LimitError
	if !errors.As(err, &le) || le.Env != EnvMaxPullBytes || le.Value != 8192 {
		t.Fatalf("Pull = %v; want a LimitError naming %s", err, EnvMaxPullBytes)
	}
	for _, want := range []string{ref, EnvMaxPullBytes, "8192"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if n := reg.count("/blobs/"); n != 0 {
		t.Errorf("%d blob requests before refusing; want 0", n)
	}
	if _, err := newStore(t, Options{MaxPullBytes: 1 << 20}).Pull(t.Context(), ref, "", nil); err != nil {
		t.Errorf("Pull under a 1 MiB cap: %v", err)
	}
}

func TestEnvOptionsLimits(t *testing.T) {
	t.Setenv(EnvMaxPullBytes, "3G")
	t.Setenv(rootfs.EnvMaxInodes, "77")
	o, err := EnvOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxPullBytes != 3<<30 || o.Limits.MaxInodes != 77 {
		t.Errorf("EnvOptions() = pull %d, inodes %d; want %d, 77", o.MaxPullBytes, o.Limits.MaxInodes, int64(3<<30))
	}
	t.Setenv(EnvMaxPullBytes, "-1")
	if _, err := EnvOptions(); err == nil || !strings.Contains(err.Error(), EnvMaxPullBytes) {
		t.Errorf("EnvOptions(bad) = %v; want an error naming %s", err, EnvMaxPullBytes)
	}
}

// zstdZeroLayer is a zstd frame of a tar whose one file claims size bytes,
// followed by only blocks RLE blocks of zeros (RFC 8878 §3.1.1.2: 4 bytes
// each for 128 KiB). The builder must refuse the file from its header.
func zstdZeroLayer(t testing.TB, size int64, blocks int) []byte {
	t.Helper()
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zero", Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	block := func(b []byte, last bool, typ, n int) []byte {
		v := uint32(n)<<3 | uint32(typ)<<1
		if last {
			v |= 1
		}
		var le [4]byte
		binary.LittleEndian.PutUint32(le[:], v)
		return append(b, le[:3]...)
	}
	frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x50}
	frame = block(frame, false, 0, hdr.Len())
	frame = append(frame, hdr.Bytes()...)
	for i := range blocks {
		frame = append(block(frame, i == blocks-1, 1, 128<<10), 0)
	}
	return frame
}

// TestRootfsZstdZeroBomb pulls an image whose zstd layer holds a 1 TiB
// file of zeros and checks Rootfs refuses it, naming the image and the
// limit, without writing the zeros.
func TestRootfsZstdZeroBomb(t *testing.T) {
	reg := newTestRegistry(t, false)
	layer := static.NewLayer(zstdZeroLayer(t, 1<<40, 8192), types.OCILayerZStd)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/bomb/zstd:v"
	push(t, ref, img)
	s := newStore(t, Options{})
	pulled, err := s.Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Rootfs(t.Context(), pulled)
	t.Logf("Rootfs: %v", err)
	var le *rootfs.LimitError
	if !errors.As(err, &le) || le.Env != rootfs.EnvMaxFileBytes {
		t.Fatalf("Rootfs(zero bomb) = %v; want a LimitError naming %s", err, rootfs.EnvMaxFileBytes)
	}
	for _, want := range []string{ref, rootfs.EnvMaxFileBytes, strconv.FormatInt(rootfs.DefaultMaxFileBytes, 10)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	var used int64
	_ = filepath.Walk(s.home.ImagesDir(), func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			used += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	if used > 1<<20 {
		t.Errorf("%d B left in the image cache; want nothing built", used)
	}
}

// FuzzLayerReader feeds arbitrary blobs to the layer decompressor (chosen
// by magic number: gzip, zstd or plain): reading must end in data or an
// error, never a panic, and a hostile zstd header cannot make it allocate
// a window beyond the 128 MiB cap.
func FuzzLayerReader(f *testing.F) {
	f.Add(zstdZeroLayer(f, 1<<40, 2))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xff}) // a huge window descriptor
	f.Add([]byte("plain tar?"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		p := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(p, blob, 0o600); err != nil {
			t.Fatal(err)
		}
		l := &layerReader{path: p, alg: "sha256", h: newHash("sha256")}
		defer l.close()
		// Bounded: a tiny blob may legitimately inflate to a lot.
		_, _ = io.CopyN(io.Discard, l, 8<<20)
		_ = l.sum()
	})
}
