package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// allowedDeps are the only non-standard packages agentd may link
// (architecture.md §2: agent, agentproto, x/sys and the small guest deps).
var allowedDeps = []string{
	"github.com/msb-go/msb/cmd/agentd",
	"github.com/msb-go/msb/internal/agent",
	"github.com/msb-go/msb/internal/agentproto",
	"golang.org/x/sys/",
	"github.com/creack/pty",
	"github.com/fxamacker/cbor/v2",
	"github.com/x448/float16", // cbor's only dependency
}

func goCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not available")
	}
	cmd := exec.Command(gobin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	return cmd
}

// TestDeps fails when agentd links a package outside allowedDeps (gVisor,
// SQLite, go-containerregistry, internal/vmm/... would bloat and endanger
// the guest binary).
func TestDeps(t *testing.T) {
	out, err := goCmd(t, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowedDeps {
			if p == a || strings.HasSuffix(a, "/") && strings.HasPrefix(p, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("agentd links %s, which is not allowed in the guest binary", p)
		}
	}
}

// TestStaticBinary checks that CGO_ENABLED=0 gives a static executable: the
// initramfs holds agentd and nothing else, no dynamic loader.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test builds agentd")
	}
	bin := filepath.Join(t.TempDir(), "agentd")
	if out, err := goCmd(t, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("agentd has a %v program header; want a static binary", p.Type)
		}
	}
}
