package nested

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/vmm/qemu"
)

func TestParseLDD(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []string
		wantErr error
	}{
		{name: "empty"},
		{name: "static", out: "\tstatically linked\n"},
		{
			name: "glibc program",
			out: "\tlinux-vdso.so.1 (0x00007ffd5e1f2000)\n" +
				"\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f3c1a000000)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3c19e00000)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f3c1a2b5000)\n",
			want: []string{"/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"},
		},
		{
			name: "path with spaces",
			out:  "\tlibx.so => /opt/my libs/libx.so (0x0000000000001000)\n",
			want: []string{"/opt/my libs/libx.so"},
		},
		{
			name:    "missing library",
			out:     "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\tlibgone.so.3 => not found\n",
			wantErr: ErrLibraryNotFound,
		},
		{name: "arrow without path", out: "\tlibweird.so => (0x0000000000001000)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLDD([]byte(tt.out))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("parseLDD error = %v; want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseLDD (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHostBinaryRunsInChroot packs QEMU (the program the nested benchmark
// runs in L1) and runs it in a chroot holding only the packed files, which,
// like L1, has no ld.so.cache: `--version` must work.
func TestHostBinaryRunsInChroot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skipf("ldd: %v", err)
	}
	bin, err := qemu.FindBinary("")
	if err != nil {
		t.Skipf("qemu: %v", err)
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "a.rom"), []byte("rom"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := HostBinary(bin, data)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, f := range files {
		paths[f.Path] = true
	}
	interp, err := interpreter(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{bin, interp, filepath.Join(data, "a.rom")} {
		if !paths[want] {
			t.Errorf("packed files lack %s", want)
		}
	}
	root := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f.HostPath)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version in a chroot of %d packed files: %v: %s", bin, len(files), err, out)
	}
	if !strings.Contains(string(out), "QEMU emulator version") {
		t.Errorf("%s --version = %q; want a QEMU version line", bin, out)
	}
}

func TestHostBinaryStatic(t *testing.T) {
	bb, err := findBusybox()
	if err != nil {
		t.Skipf("static busybox: %v", err)
	}
	files, err := HostBinary(bb)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Path != bb {
		t.Errorf("HostBinary(%s) = %+v; want only the binary itself", bb, files)
	}
}
