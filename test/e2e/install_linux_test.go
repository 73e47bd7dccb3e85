package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLIInstallAlias runs msb install's scripts against the real msb: a
// kept alias creates its sandbox (with -m) on the first call and reuses it,
// files included, on the next, which passes no creation flag (msb run
// refuses those for a sandbox that exists); a --tmp alias starts afresh
// each call and leaves no sandbox behind.
func TestCLIInstallAlias(t *testing.T) {
	c := newCLI(t)
	const ref = "localhost/alias/busybox:1"
	c.must(0, "image", "import", busyboxRootfs(t), ref)
	bin := t.TempDir()
	c.env = append(c.env, "MSB_BIN_DIR="+bin)
	c.must(0, "install", "-n", "bb", "-m", "256M", "-e", "GREETING=it's me", ref, "--", "sh", "-c")
	c.must(0, "install", "--tmp", "-n", "bbtmp", "-m", "256M", ref, "--", "sh", "-c")

	alias := func(name, script string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), script)
		cmd.Env = c.env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %q: %v\nstderr: %s", name, script, err, errb.String())
		}
		return out.String()
	}
	start := time.Now()
	if got := alias("bb", `echo "$GREETING" > /root/kept; cat /root/kept`); got != "it's me\n" {
		t.Errorf("bb, first call, printed %q; want %q", got, "it's me\n")
	}
	if _, ok := c.ls()["bb"]; !ok {
		t.Fatalf("after the first call of bb, msb ls has no sandbox bb")
	}
	if got := alias("bb", `cat /root/kept`); got != "it's me\n" {
		t.Errorf("bb, second call, printed %q; want the file of the first call", got)
	}
	if got := alias("bbtmp", `echo x > /root/kept; ls /root`); got != "kept\n" {
		t.Errorf("bbtmp printed %q", got)
	}
	if got := alias("bbtmp", `ls /root`); got != "" {
		t.Errorf("bbtmp, second call, printed %q; want a fresh /root", got)
	}
	t.Logf("four alias calls took %v", time.Since(start).Round(time.Millisecond))
	if n := len(c.ls()); n != 1 {
		t.Errorf("msb ls lists %d sandboxes; want only bb", n)
	}
	if r := c.must(0, "install", "-l"); !strings.Contains(string(r.stdout), "bbtmp") {
		t.Errorf("install -l: %s", r.stdout)
	}
}
