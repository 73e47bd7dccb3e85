package msb_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goList runs `go list -json` for patterns and decodes the stream.
func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

type listedPackage struct {
	ImportPath string
	Dir        string
	Name       string
	Doc        string
	GoFiles    []string
	Deps       []string
	Imports    []string
}

// TestPackageDocs requires a package doc comment on every package, so each
// one says what it is for.
func TestPackageDocs(t *testing.T) {
	for _, p := range goList(t, "./...") {
		if p.Doc != "" {
			continue
		}
		// go list reports Doc only from non-test files of the current
		// GOOS; parse every file to be sure before complaining.
		found := false
		fset := token.NewFileSet()
		files, _ := filepath.Glob(filepath.Join(p.Dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(fset, f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err == nil && af.Doc != nil {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("package %s has no package doc comment", p.ImportPath)
		}
	}
}

// TestDependencyRules enforces the architecture's dependency rules: the guest
// agent stays small and static, the protocol package is stdlib + CBOR, and
// virtio devices never reach for transports, the VMM or the network stack.
func TestDependencyRules(t *testing.T) {
	const mod = "github.com/msb-go/msb/"
	tests := []struct {
		pkg     string
		allowed func(dep string) bool
	}{
		{
			pkg: "./cmd/agentd",
			allowed: func(d string) bool {
				return isStd(d) || strings.HasPrefix(d, "golang.org/x/sys/") ||
					strings.HasPrefix(d, "github.com/fxamacker/cbor/") || strings.HasPrefix(d, "github.com/x448/float16") ||
					strings.HasPrefix(d, "github.com/creack/pty") ||
					d == mod+"internal/agent" || strings.HasPrefix(d, mod+"internal/agent/") ||
					d == mod+"internal/agentproto"
			},
		},
		// The SDK and the CLI never link the sandbox process: no VMM, no
		// seccomp or landlock, no FUSE server, no network stack. Only
		// cmd/msb's hidden `sandbox` entry links internal/supervisor.
		{pkg: ".", allowed: notSandboxProcess},
		{pkg: "./internal/cli", allowed: notSandboxProcess},
		{pkg: "./internal/sandbox", allowed: notSandboxProcess},
		// The containerd shim is an SDK program: no sandbox process
		// inside it, and none of containerd v2's pkg/shim, whose
		// bootstrap containerd 1.6 cannot speak (docs/kubernetes.md).
		{
			pkg: "./cmd/containerd-shim-msb-v2",
			allowed: func(d string) bool {
				return notSandboxProcess(d) && !strings.HasPrefix(d, "github.com/containerd/containerd/v2/pkg/shim")
			},
		},
		// Shares are served by internal/passthrough, never by go-fuse's
		// node or loopback file systems, which follow host symlinks and
		// accept ".." in names (security review, finding 1).
		{
			pkg: "./cmd/msb",
			allowed: func(d string) bool {
				return d != "github.com/hanwen/go-fuse/v2/fs" && !strings.HasPrefix(d, "github.com/hanwen/go-fuse/v2/fs/")
			},
		},
		{
			pkg:     "./internal/launch",
			allowed: isStd,
		},
		{
			pkg:     "./internal/volume",
			allowed: func(d string) bool { return isStd(d) || d == mod+"internal/home" },
		},
		{
			pkg: "./internal/agentproto",
			allowed: func(d string) bool {
				return isStd(d) || strings.HasPrefix(d, "github.com/fxamacker/cbor/") || strings.HasPrefix(d, "github.com/x448/float16")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			if _, err := os.Stat(strings.TrimPrefix(tc.pkg, "./")); err != nil {
				t.Fatalf("%s: %v", tc.pkg, err)
			}
			pkgs := goList(t, tc.pkg)
			for _, d := range pkgs[0].Deps {
				if !tc.allowed(d) {
					t.Errorf("%s depends on %s, which the dependency rules forbid", tc.pkg, d)
				}
			}
		})
	}
}

// sandboxProcessOnly are the packages only the sandbox process may link.
var sandboxProcessOnly = []string{
	"github.com/msb-go/msb/internal/supervisor",
	"github.com/msb-go/msb/internal/relay",
	"github.com/msb-go/msb/internal/vmm",
	"github.com/msb-go/msb/internal/virtio",
	"github.com/msb-go/msb/internal/passthrough",
	"github.com/msb-go/msb/internal/netstack",
	"github.com/elastic/go-seccomp-bpf",
	"github.com/landlock-lsm/go-landlock",
	"github.com/hanwen/go-fuse",
	"gvisor.dev/gvisor",
}

func notSandboxProcess(dep string) bool {
	for _, p := range sandboxProcessOnly {
		if dep == p || strings.HasPrefix(dep, p+"/") {
			return false
		}
	}
	return true
}

// isStd reports whether an import path is in the standard library (no dot in
// its first element), including the vendored golang.org/x packages the
// standard library carries.
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".") || strings.HasPrefix(path, "vendor/")
}

// TestUnsafeConfined keeps package unsafe in *_unsafe.go files (and tests),
// so every use of it is easy to find and review (gVisor's checkunsafe).
func TestUnsafeConfined(t *testing.T) {
	for _, p := range goList(t, "./...") {
		for _, f := range p.GoFiles {
			if strings.HasSuffix(f, "_unsafe.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				if imp.Path.Value == `"unsafe"` {
					t.Errorf("%s imports unsafe; move that code into a *_unsafe.go file", filepath.Join(p.ImportPath, f))
				}
			}
		}
	}
}
