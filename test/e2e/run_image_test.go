package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/msb-go/msb/internal/image"
)

// specialLayers returns two layers exercising what container runtimes must
// get right: whiteouts, opaque directories, hardlinks, a file capability, a
// 0700 root-owned directory and non-root ownership.
func specialLayers(t *testing.T) [][]byte {
	t.Helper()
	// vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE (10).
	capData := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	type entry struct {
		hdr  tar.Header
		body string
	}
	layers := [][]entry{
		{
			{hdr: tar.Header{Name: "t/", Typeflag: tar.TypeDir, Mode: 0o755}},
			{hdr: tar.Header{Name: "t/keep", Typeflag: tar.TypeReg, Mode: 0o644}, body: "keep"},
			{hdr: tar.Header{Name: "t/gone", Typeflag: tar.TypeReg, Mode: 0o644}, body: "gone"},
			{hdr: tar.Header{Name: "t/opq/", Typeflag: tar.TypeDir, Mode: 0o755}},
			{hdr: tar.Header{Name: "t/opq/old1", Typeflag: tar.TypeReg, Mode: 0o644}, body: "old"},
			{hdr: tar.Header{Name: "t/link1", Typeflag: tar.TypeReg, Mode: 0o644}, body: "linked"},
			{hdr: tar.Header{Name: "t/link2", Typeflag: tar.TypeLink, Linkname: "t/link1"}},
			{hdr: tar.Header{Name: "t/cap", Typeflag: tar.TypeReg, Mode: 0o755,
				PAXRecords: map[string]string{"SCHILY.xattr.security.capability": capData}}, body: "#!/bin/sh\n"},
			{hdr: tar.Header{Name: "t/secret/", Typeflag: tar.TypeDir, Mode: 0o700}},
			{hdr: tar.Header{Name: "t/secret/key", Typeflag: tar.TypeReg, Mode: 0o600}, body: "k"},
			{hdr: tar.Header{Name: "t/owned", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1000}, body: "o"},
		},
		{
			{hdr: tar.Header{Name: "t/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o644}},
			{hdr: tar.Header{Name: "t/opq/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o644}},
			{hdr: tar.Header{Name: "t/opq/new1", Typeflag: tar.TypeReg, Mode: 0o644}, body: "new"},
		},
	}
	var out [][]byte
	for _, l := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range l {
			h := e.hdr
			h.Size = int64(len(e.body))
			h.ModTime = time.Unix(1700000000, 0)
			if h.PAXRecords != nil {
				h.Format = tar.FormatPAX
			}
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, e.body)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

// checkScript prints, as JSON, what the guest sees of the special layers.
const checkScript = `
import json, os
def st(p):
    try:
        s = os.lstat(p)
    except FileNotFoundError:
        return None
    return {"mode": oct(s.st_mode), "uid": s.st_uid, "gid": s.st_gid, "nlink": s.st_nlink}
r = {p: st("/t/" + p) for p in ["keep", "gone", "link1", "link2", "cap", "secret", "secret/key", "owned"]}
r["opq"] = sorted(os.listdir("/t/opq"))
r["same_inode"] = os.stat("/t/link1").st_ino == os.stat("/t/link2").st_ino
r["cap_xattr"] = os.getxattr("/t/cap", "security.capability").hex()
r["keep_data"] = open("/t/keep").read()
m = [l.split() for l in open("/proc/mounts") if l.split()[1] == "/tmp"]
r["tmp"] = [m[-1][2], oct(os.stat("/tmp").st_mode), os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize] if m else None
print(json.dumps(r, sort_keys=True))
`

// TestCLIRunImage is issue 6's end-to-end check: an image pushed to a real
// registry runs with `msb run`, runs again with the registry gone (the cache
// serves it), and its special files look in the guest as OCI semantics say;
// its /tmp is a tmpfs.
func TestCLIRunImage(t *testing.T) {
	c := newCLI(t)
	ctx := t.Context()
	dir := debianPythonRootfs(t)
	reg := startRegistry(t)
	base, err := image.ImageFromDir(ctx, dir, image.Config{Cmd: []string{"python3"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var layers []mutate.Addendum
	for _, b := range specialLayers(t) {
		b := b
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, mutate.Addendum{Layer: l})
	}
	img, err := mutate.Append(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	ref := "localhost:" + strings.Split(reg.Host, ":")[1] + "/debian-python:latest"
	if err := openImageStore(t).Push(ctx, ref, img); err != nil {
		t.Fatalf("push: %v", err)
	}

	start := time.Now()
	r := c.must(0, "run", "-q", ref, "--", "python3", "-c", "print(1+1)")
	if got := string(r.stdout); got != "2\n" {
		t.Fatalf("first run printed %q; want %q (stderr %s)", got, "2\n", r.stderr)
	}
	t.Logf("first run (pull + EROFS build + boot): %v", time.Since(start))

	reg.stop()
	start = time.Now()
	r = c.must(0, "run", "-q", ref, "--", "python3", "-c", "print(1+1)")
	if got := string(r.stdout); got != "2\n" {
		t.Fatalf("run with the registry stopped printed %q; want %q (stderr %s)", got, "2\n", r.stderr)
	}
	t.Logf("second run (cached, registry stopped): %v", time.Since(start))

	r = c.must(0, "run", "-q", ref, "--", "python3", "-c", checkScript)
	var got map[string]any
	if err := json.Unmarshal(r.stdout, &got); err != nil {
		t.Fatalf("check script output %q: %v (stderr %s)", r.stdout, err, r.stderr)
	}
	want := map[string]any{
		"keep":       map[string]any{"mode": "0o100644", "uid": 0.0, "gid": 0.0, "nlink": 1.0},
		"gone":       nil,
		"link1":      map[string]any{"mode": "0o100644", "uid": 0.0, "gid": 0.0, "nlink": 2.0},
		"link2":      map[string]any{"mode": "0o100644", "uid": 0.0, "gid": 0.0, "nlink": 2.0},
		"cap":        map[string]any{"mode": "0o100755", "uid": 0.0, "gid": 0.0, "nlink": 1.0},
		"secret":     map[string]any{"mode": "0o40700", "uid": 0.0, "gid": 0.0, "nlink": 2.0},
		"secret/key": map[string]any{"mode": "0o100600", "uid": 0.0, "gid": 0.0, "nlink": 1.0},
		"owned":      map[string]any{"mode": "0o100640", "uid": 1000.0, "gid": 1000.0, "nlink": 1.0},
		"opq":        []any{"new1"},
		"same_inode": true,
		"cap_xattr":  "0100000200040000000000000000000000000000",
		"keep_data":  "keep",
		// An image's /tmp is a tmpfs of a quarter of the guest's 512 MiB.
		"tmp": []any{"tmpfs", "0o41777", float64(128 << 20)},
	}
	for k, w := range want {
		if g := got[k]; !jsonEqual(g, w) {
			t.Errorf("%s: guest sees %v; want %v", k, g, w)
		}
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
