package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msb-go/msb"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/store"
)

func TestSnapshotHelpGolden(t *testing.T) {
	t.Setenv(home.EnvVar, t.TempDir())
	for _, sub := range []string{"", "create", "ls", "inspect", "rm", "export", "import"} {
		name := strings.TrimSpace("snapshot " + sub)
		t.Run(name, func(t *testing.T) {
			args := append(strings.Fields(name), "--help")
			code, out, errs := runMSB(t, args...)
			if code != 0 {
				t.Fatalf("msb %s --help: exit %d, %s", name, code, errs)
			}
			golden(t, "help/"+strings.ReplaceAll(name, " ", "-")+".golden", out)
		})
	}
	_, snap, _ := runMSB(t, "snap", "--help")
	_, snapshot, _ := runMSB(t, "snapshot", "--help")
	if snap != snapshot {
		t.Errorf("msb snap --help differs from msb snapshot --help")
	}
	if _, out, _ := runMSB(t, "run", "--help"); !strings.Contains(out, "--snapshot") {
		t.Errorf("run --help does not show --snapshot")
	}
}

// TestSnapshotCommands drives the snapshot commands over a stored (never
// booted) image sandbox: create, ls, inspect --verify, a flipped byte,
// export, rm and an import refused for its missing image.
func TestSnapshotCommands(t *testing.T) {
	root := t.TempDir()
	t.Setenv(home.EnvVar, root)
	h, err := home.At(root)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), h.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("d", 64)
	cfg := `{"image":"busybox:latest","image_digest":"` + digest + `","vcpus":1,"memory_mib":512}`
	for _, n := range []string{"dev", "busy"} {
		if err := h.EnsureSandboxDirs(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateSandbox(t.Context(), "dev", json.RawMessage(cfg), store.StatusStopped); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateSandbox(t.Context(), "busy", json.RawMessage(cfg), store.StatusRunning); err != nil {
		t.Fatal(err)
	}
	st.Close()
	upper := h.UpperPath("dev")
	f, err := os.Create(upper)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(32 << 20)
	f.WriteAt([]byte("state"), 3<<20)
	f.Close()

	code, out, errs := runMSB(t, "snapshot", "create", "base", "--from", "dev", "--label", "k=v")
	if code != 0 || !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("snapshot create: exit %d, %q, %s", code, out, errs)
	}
	id := strings.TrimSpace(out)
	if code, _, errs := runMSB(t, "snapshot", "create", "base", "--from", "dev"); code == 0 || !strings.Contains(errs, "-f") {
		t.Errorf("snapshot create over an existing name: exit %d, %s; want an error with a -f hint", code, errs)
	}
	if code, _, errs := runMSB(t, "snap", "create", "x", "--from", "busy"); code == 0 || !strings.Contains(errs, "msb stop busy") {
		t.Errorf("snapshot of a running sandbox: exit %d, %s; want an error with a stop hint", code, errs)
	}
	if code, _, errs := runMSB(t, "snapshot", "create", "x"); code == 0 || !strings.Contains(errs, "--from") {
		t.Errorf("snapshot create without --from: exit %d, %s", code, errs)
	}

	code, out, errs = runMSB(t, "snapshot", "ls", "--format", "json")
	var list []msb.SnapshotInfo
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("snapshot ls --format json: exit %d, %s, %s", code, out, errs)
	}
	if got := list[0]; got.Name != "base" || got.ID != id || got.ImageDigest != digest || got.SourceSandbox != "dev" ||
		got.Labels["k"] != "v" || got.SizeBytes != 32<<20 || got.AllocatedBytes > 1<<20 {
		t.Errorf("snapshot ls = %+v", got)
	}
	if code, out, _ := runMSB(t, "snapshot", "ls"); code != 0 || !strings.Contains(out, "base") || !strings.Contains(out, id[7:19]) {
		t.Errorf("snapshot ls: exit %d, %s", code, out)
	}
	code, out, errs = runMSB(t, "snapshot", "inspect", id, "--verify", "--format", "json")
	if code != 0 || !strings.Contains(out, `"Verified": "ok"`) {
		t.Errorf("snapshot inspect --verify: exit %d, %s, %s", code, out, errs)
	}

	// Export while intact, then flip one byte of the snapshot's disk.
	archive := filepath.Join(t.TempDir(), "base.tar.zst")
	if code, _, errs := runMSB(t, "snapshot", "export", "base", archive); code != 0 {
		t.Fatalf("snapshot export: exit %d, %s", code, errs)
	}
	sf, err := os.OpenFile(filepath.Join(h.SnapshotDir("base"), "upper.ext4"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	sf.WriteAt([]byte("S"), 3<<20)
	sf.Close()
	if code, _, errs := runMSB(t, "snapshot", "inspect", "base", "--verify"); code == 0 || !strings.Contains(errs, "does not match") {
		t.Errorf("inspect --verify of a flipped byte: exit %d, %s; want a digest error", code, errs)
	}
	if code, _, errs := runMSB(t, "snapshot", "export", "base", archive+"2"); code == 0 || !strings.Contains(errs, "does not match") {
		t.Errorf("export of a damaged snapshot: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(archive + "2"); err == nil {
		t.Errorf("failed export left %s", archive+"2")
	}

	if code, out, errs := runMSB(t, "snapshot", "rm", "base"); code != 0 || out != "base\n" {
		t.Errorf("snapshot rm: exit %d, %q, %s", code, out, errs)
	}
	if code, _, errs := runMSB(t, "snapshot", "inspect", "base"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("inspect after rm: exit %d, %s", code, errs)
	}
	if code, _, errs := runMSB(t, "snapshot", "import", archive); code == 0 || !strings.Contains(errs, "msb pull busybox:latest") {
		t.Errorf("import without the image: exit %d, %s; want a pull hint", code, errs)
	}
	if code, _, errs := runMSB(t, "snapshot", "import", filepath.Join(t.TempDir(), "..bad.tar")); code == 0 || !strings.Contains(errs, "--name") {
		t.Errorf("import of an unnameable file: exit %d, %s", code, errs)
	}
}

func TestImportName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/x/base.tar.zst", "base"}, {"base.tar", "base"}, {"a.b.tzst", "a.b"}, {"raw", "raw"},
	} {
		if got := importName(tt.in); got != tt.want {
			t.Errorf("importName(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
