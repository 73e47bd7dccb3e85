package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
)

// TestFormatJSONShape pins the JSON each listing command prints, from fixed
// values, so a renamed field shows up as a golden diff.
func TestFormatJSONShape(t *testing.T) {
	at := time.Date(2026, 5, 3, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"ls", []msb.Info{
			{Name: "web", Status: "Running", PID: 4242, CreatedAt: at, Ports: []string{"127.0.0.1:8080->80/tcp"},
				Mounts: []msb.Mount{{Kind: "bind", Source: "/srv/data", Target: "/data", ReadOnly: true}}},
			{Name: "bare", Status: "Stopped", CreatedAt: at, Reason: "Completed", Network: "none"},
		}},
		{"image-ls", []image.Image{{
			Ref: "docker.io/library/alpine:3.20", ManifestDigest: "sha256:0123456789abcdef",
			Config:       image.Config{Env: []string{"PATH=/usr/bin:/bin"}, Cmd: []string{"/bin/sh"}},
			LayerDiffIDs: []string{"sha256:aaaa"}, Layers: []string{"sha256:bbbb"}, SizeBytes: 3 << 20, Platform: "linux/amd64",
		}}},
		{"volume-ls", []volumeInfo{{Name: "data", Path: "/home/u/.msb/volumes/data", CreatedAt: at, QuotaBytes: 1 << 30,
			UsedBytes: 4096, Labels: map[string]string{"team": "ml"}, Sandboxes: []string{"web"}}}},
		{"snapshot-ls", []msb.SnapshotInfo{{Name: "base", ID: "sha256:feedface", ImageReference: "docker.io/library/alpine:3.20",
			ImageDigest: "sha256:0123456789abcdef", SourceSandbox: "web", CreatedAt: at, Labels: map[string]string{"v": "1"},
			SizeBytes: 1 << 30, AllocatedBytes: 8 << 20, UpperDigest: "msb-sparse-sha256-v1:abcd", Path: "/home/u/.msb/snapshots/base"}}},
		{"registry-ls", []image.Login{{Registry: "ghcr.io", Username: "octocat"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeJSON(&b, tc.v); err != nil {
				t.Fatal(err)
			}
			golden(t, "format/"+tc.name+".json", b.String())
		})
	}
}

// TestFormatFlags runs every listing command on an empty home: --format json
// prints an empty JSON array (never null), table prints a header, and an
// unknown format is an error.
func TestFormatFlags(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	for _, args := range [][]string{
		{"ls"}, {"status"}, {"ps", "-a"}, {"image", "ls"}, {"volume", "ls"}, {"snapshot", "ls"},
		{"registry", "ls"}, {"metrics", "--all"},
	} {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			if code, out, errs := runMSB(t, append(args, "--format", "json")...); code != 0 || out != "[]\n" {
				t.Errorf("msb %s --format json: exit %d, stdout %q, stderr %q; want []", name, code, out, errs)
			}
			if code, out, errs := runMSB(t, args...); code != 0 || strings.Count(out, "\n") != 1 {
				t.Errorf("msb %s: exit %d, stdout %q, stderr %q; want a header line", name, code, out, errs)
			}
			if code, _, errs := runMSB(t, append(args, "--format", "yaml")...); code == 0 || !strings.Contains(errs, `--format "yaml"`) {
				t.Errorf("msb %s --format yaml: exit %d, stderr %q; want an error", name, code, errs)
			}
		})
	}
	for _, args := range [][]string{{"inspect", "nope"}, {"image", "inspect", "nope"}, {"volume", "inspect", "nope"}, {"snapshot", "inspect", "nope"}} {
		if code, _, errs := runMSB(t, append(args, "--format", "yaml")...); code == 0 || !strings.Contains(errs, "yaml") {
			t.Errorf("msb %v --format yaml: exit %d, stderr %q; want a format error", args, code, errs)
		}
	}
}

func TestCompletionGolden(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errs := runMSB(t, "completion", shell)
		if code != 0 {
			t.Fatalf("msb completion %s: exit %d, %s", shell, code, errs)
		}
		golden(t, "completion/"+shell+".golden", out)
	}
	if code, _, errs := runMSB(t, "completion", "tcsh"); code == 0 || !strings.Contains(errs, "want bash, zsh or fish") {
		t.Errorf("msb completion tcsh: exit %d, %q", code, errs)
	}
}

// TestCompletionNames: the scripts complete subcommands from the tree.
func TestCompletionNames(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	_, out, _ := runMSB(t, "__complete", "lo")
	if !strings.Contains(out, "logs\t") {
		t.Errorf("msb __complete lo = %q; want logs among the candidates", out)
	}
	_, out, _ = runMSB(t, "__complete", "logs", "--gr")
	if !strings.Contains(out, "--grep") {
		t.Errorf("msb __complete logs --gr = %q; want --grep", out)
	}
}

// TestDocsUpToDate fails when docs/cli.md is not what `make docs` writes
// from the current command tree.
func TestDocsUpToDate(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	var b bytes.Buffer
	if err := WriteDocs(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "cli.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make docs)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("docs/cli.md is stale; run make docs (-file +generated):\n%s", diff)
	}
	for _, c := range []string{"## msb logs", "## msb metrics", "## msb completion", "## msb install", "## Exit codes", "| 127 |"} {
		if !strings.Contains(b.String(), c) {
			t.Errorf("docs lack %q", c)
		}
	}
}

// TestHelpGoldenAll pins --help of every visible command.
func TestHelpGoldenAll(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	root := newRoot(Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
	for _, c := range visibleCommands(root) {
		path := strings.Fields(c.CommandPath())[1:]
		t.Run(strings.Join(path, "-"), func(t *testing.T) {
			code, out, errs := runMSB(t, append(path, "--help")...)
			if code != 0 {
				t.Fatalf("msb %v --help: exit %d, %s", path, code, errs)
			}
			golden(t, "help/"+strings.Join(path, "-")+".golden", out)
		})
	}
}

// TestCompletionSandboxNames: commands that take sandbox names complete them
// from the store, and uninstall completes only msb's own aliases.
func TestCompletionSandboxNames(t *testing.T) {
	storedSandboxes(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"logs", ""}, []string{"bare\tStopped", "web\tStopped"}},
		{[]string{"logs", "web", ""}, nil},
		{[]string{"rm", "web", ""}, []string{"bare\tStopped"}},
	} {
		_, out, _ := runMSB(t, append([]string{"__complete"}, tc.args...)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "Completion ended") {
				got = append(got, l)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("msb __complete %q = %q; want %q", tc.args, got, tc.want)
		}
	}
	dir := t.TempDir()
	t.Setenv(binDirEnv, dir)
	runMSB(t, "install", "alpine")
	os.WriteFile(filepath.Join(dir, "other"), []byte("#!/bin/sh\n"), 0o755)
	if _, out, _ := runMSB(t, "__complete", "uninstall", ""); !strings.HasPrefix(out, "alpine\n:") {
		t.Errorf("msb __complete uninstall = %q; want alpine only", out)
	}
}
