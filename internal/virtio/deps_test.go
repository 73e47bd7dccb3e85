package virtio_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	modVirtio   = "github.com/msb-go/msb/internal/virtio"
	modGuestmem = "github.com/msb-go/msb/internal/guestmem"
)

// imports returns the imports of the non-test Go files in dir.
func imports(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = true
		}
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return out
}

func isStd(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }

// TestDeps enforces the dependency rules of architecture.md §2: devices
// import only virtio, guestmem, the standard library and x/sys (never a
// transport, the VMM or the network stack); virtio and guestmem themselves
// are standard library only, which keeps the rule transitive.
func TestDeps(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	devices := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "virtio") || name == "virtiotest" {
			continue
		}
		devices++
		t.Run(name, func(t *testing.T) {
			for p := range imports(t, name) {
				ok := isStd(p) || p == modVirtio || p == modGuestmem || strings.HasPrefix(p, "golang.org/x/sys/")
				// virtio-fs parses FUSE with go-fuse's ProtocolServer
				// (dependencies.md §5); no other device may import it.
				// The file system is injected (Config.FS): the VMM builds
				// internal/passthrough, and go-fuse's node and loopback
				// file systems (go-fuse/v2/fs) are imported by nobody.
				ok = ok || name == "virtiofs" && p == "github.com/hanwen/go-fuse/v2/fuse"
				if !ok {
					t.Errorf("device %s imports %s; devices may import only virtio, guestmem, the stdlib and x/sys", name, p)
				}
			}
		})
	}
	if devices < 4 {
		t.Errorf("found %d device packages; want at least 4 (blk, console, net, rng)", devices)
	}
	for _, dir := range []string{".", "../guestmem"} {
		t.Run("core "+dir, func(t *testing.T) {
			for p := range imports(t, dir) {
				if !isStd(p) && p != modGuestmem {
					t.Errorf("%s imports %s; want stdlib and guestmem only", dir, p)
				}
			}
		})
	}
	t.Run("vhostuser", func(t *testing.T) {
		for p := range imports(t, "vhostuser") {
			if !isStd(p) && p != modVirtio && p != modGuestmem && !strings.HasPrefix(p, "golang.org/x/sys/") {
				t.Errorf("vhostuser imports %s; want virtio, guestmem, x/sys and the stdlib", p)
			}
		}
	})
	t.Run("mmio", func(t *testing.T) {
		for p := range imports(t, "mmio") {
			if !isStd(p) && p != modVirtio && p != modGuestmem {
				t.Errorf("mmio imports %s; want virtio, guestmem and the stdlib", p)
			}
		}
	})
}
