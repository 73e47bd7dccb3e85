package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/volume"
)

// runMSB runs the msb command line args against the MSB_HOME of the test.
func runMSB(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(t.Context(), args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

func TestVolumeCommands(t *testing.T) {
	root := t.TempDir()
	t.Setenv(home.EnvVar, root)
	h, err := home.At(root)
	if err != nil {
		t.Fatal(err)
	}

	if code, out, errs := runMSB(t, "volume", "create", "data", "--size", "1G", "--label", "team=ml", "--label", "tier=hot"); code != 0 || out != "data\n" {
		t.Fatalf("volume create: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := runMSB(t, "volume", "create", "data"); code != 0 {
		t.Errorf("second volume create: exit %d, stderr %q; want idempotent", code, errs)
	}
	if code, _, errs := runMSB(t, "vol", "create", "data", "--size", "2G"); code == 0 || !strings.Contains(errs, "volume exists") {
		t.Errorf("volume create with another size: exit %d, stderr %q; want volume exists", code, errs)
	}
	if code, _, errs := runMSB(t, "volume", "create", "bad/name"); code == 0 || !strings.Contains(errs, "invalid name") {
		t.Errorf("volume create bad/name: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runMSB(t, "volume", "create", "x", "--size", "huge"); code == 0 || !strings.Contains(errs, "--size") {
		t.Errorf("volume create --size huge: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runMSB(t, "volume", "create", "scratch"); code != 0 {
		t.Fatalf("volume create scratch: exit %d, %s", code, errs)
	}
	if err := os.WriteFile(filepath.Join(volume.DataDir(h, "data"), "f"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}

	// A stored sandbox that mounts data (no process needed).
	st, err := store.Open(t.Context(), h.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	cfg := `{"rootfs":"/r","vcpus":1,"memory_mib":512,"mounts":[{"kind":"bind","source":"` +
		volume.DataDir(h, "data") + `","target":"/data","volume":"data"},{"kind":"tmpfs","target":"/tmp"}]}`
	if _, err := st.CreateSandbox(context.Background(), "user1", json.RawMessage(cfg), store.StatusStopped); err != nil {
		t.Fatal(err)
	}
	st.Close()

	code, out, errs := runMSB(t, "volume", "ls")
	if code != 0 {
		t.Fatalf("volume ls: exit %d, %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "data ") ||
		!strings.Contains(lines[1], "1.0 GiB") || !strings.Contains(lines[1], "user1") || !strings.HasPrefix(lines[2], "scratch ") {
		t.Errorf("volume ls:\n%s", out)
	}

	code, out, errs = runMSB(t, "volume", "ls", "--format", "json")
	if code != 0 {
		t.Fatalf("volume ls --format json: exit %d, %s", code, errs)
	}
	var infos []volumeInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("volume ls json: %v\n%s", err, out)
	}
	if len(infos) != 2 || infos[0].Name != "data" || infos[0].QuotaBytes != 1<<30 || infos[0].Labels["team"] != "ml" ||
		infos[0].UsedBytes < 8192 || infos[0].Path != volume.DataDir(h, "data") ||
		len(infos[0].Sandboxes) != 1 || infos[0].Sandboxes[0] != "user1" || len(infos[1].Sandboxes) != 0 {
		t.Errorf("volume ls json = %+v", infos)
	}

	code, out, errs = runMSB(t, "volume", "inspect", "data")
	if code != 0 {
		t.Fatalf("volume inspect: exit %d, %s", code, errs)
	}
	for _, want := range []string{"Path:", volume.DataDir(h, "data"), "Quota:", "1.0 GiB", "team=ml", "tier=hot", "Sandboxes:", "user1"} {
		if !strings.Contains(out, want) {
			t.Errorf("volume inspect lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := runMSB(t, "volume", "inspect", "nope"); code == 0 || !strings.Contains(errs, "volume not found") {
		t.Errorf("volume inspect nope: exit %d, stderr %q", code, errs)
	}

	// ls --format json of sandboxes shows the mounts.
	code, out, errs = runMSB(t, "ls", "--format", "json")
	if code != 0 || !strings.Contains(out, `"Volume": "data"`) || !strings.Contains(out, `"Target": "/tmp"`) {
		t.Errorf("ls --format json: exit %d, stderr %q:\n%s", code, errs, out)
	}

	if code, _, errs := runMSB(t, "volume", "rm", "data"); code == 0 || !strings.Contains(errs, "in use") || !strings.Contains(errs, "user1") {
		t.Errorf("volume rm in use: exit %d, stderr %q", code, errs)
	}
	if _, err := volume.Get(h, "data"); err != nil {
		t.Fatalf("refused rm removed the volume: %v", err)
	}
	if code, out, errs := runMSB(t, "volume", "rm", "scratch"); code != 0 || out != "scratch\n" {
		t.Errorf("volume rm scratch: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := runMSB(t, "volume", "rm", "-f", "data"); code != 0 {
		t.Errorf("volume rm -f: exit %d, stderr %q", code, errs)
	}
	if code, out, _ := runMSB(t, "volume", "ls", "--format", "json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("volume ls after rm: exit %d, %q", code, out)
	}
	if code, _, errs := runMSB(t, "volume", "rm", "scratch"); code == 0 || !strings.Contains(errs, "msb volume ls") {
		t.Errorf("volume rm of a removed volume: exit %d, stderr %q", code, errs)
	}
}

// TestCreateRejectsFileBind checks that a FIFO behind -v (neither a
// directory nor a regular file) fails create before anything boots.
func TestCreateRejectsFileBind(t *testing.T) {
	root := t.TempDir()
	t.Setenv(home.EnvVar, filepath.Join(root, "home"))
	file := filepath.Join(root, "notes.txt")
	if err := syscall.Mkfifo(file, 0o600); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(root, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runMSB(t, "create", "--rootfs", rootfs, "-v", file+":/notes.txt")
	if code == 0 || !strings.Contains(errs, "a bind mount needs a directory or a regular file") {
		t.Errorf("create -v FILE: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runMSB(t, "create", "--rootfs", rootfs, "-v", root+":/x", "--tmpfs", "/x")
	if code == 0 || !strings.Contains(errs, "two mounts on one guest path") {
		t.Errorf("create with two mounts on /x: exit %d, stderr %q", code, errs)
	}
}
