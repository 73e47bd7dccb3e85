package sandbox

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/volume"
)

func TestNormalizeMounts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	img := filepath.Join(dir, "disk.img")
	for _, f := range []string{file, img} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link.img")
	if err := os.Symlink(img, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	t.Chdir(dir)

	bind := func(src, dst string) launch.Mount {
		return launch.Mount{Kind: launch.MountBind, Source: src, Target: dst}
	}
	disk := func(src, dst string) launch.Mount {
		return launch.Mount{Kind: launch.MountDisk, Source: src, Target: dst}
	}
	named := func(name, dst string) launch.Mount {
		return launch.Mount{Kind: launch.MountBind, Volume: name, Target: dst}
	}
	tmpfs := func(dst string, mib int) launch.Mount {
		return launch.Mount{Kind: launch.MountTmpfs, Target: dst, SizeMiB: mib}
	}
	tests := []struct {
		name string
		in   []launch.Mount
		want []launch.Mount // nil: same as in
		err  string
	}{
		{name: "none"},
		{name: "bind, named, tmpfs, disk", in: []launch.Mount{bind(dir, "/work"), named("data", "/data"), tmpfs("/tmp", 64), disk(img, "/mnt/d")}},
		{name: "relative bind made absolute", in: []launch.Mount{bind(".", "/work")}, want: []launch.Mount{bind(dir, "/work")}},
		{name: "missing bind source left to boot", in: []launch.Mount{bind(missing, "/m")}},
		{name: "missing disk left to boot", in: []launch.Mount{disk(missing, "/m")}},
		{name: "file bind", in: []launch.Mount{bind(file, "/f")}},
		{name: "directory disk", in: []launch.Mount{disk(dir, "/d")}, err: "is a directory"},
		{name: "guest root", in: []launch.Mount{bind(dir, "/")}, err: "must be absolute, clean and not /"},
		{name: "relative guest path", in: []launch.Mount{tmpfs("tmp", 0)}, err: "must be absolute"},
		{name: "unclean guest path", in: []launch.Mount{tmpfs("/a/../b", 0)}, err: "must be absolute, clean"},
		{name: "colon in guest path", in: []launch.Mount{tmpfs("/a:b", 0)}, err: "must not contain ':'"},
		{name: "semicolon in guest path", in: []launch.Mount{named("v", "/a;b")}, err: "must not contain"},
		{name: "bad volume name", in: []launch.Mount{named("../etc", "/x")}, err: "invalid name"},
		{name: "volume on a disk", in: []launch.Mount{{Kind: launch.MountDisk, Source: img, Volume: "v", Target: "/x"}}, err: "only a bind mount can name a volume"},
		{name: "empty bind source", in: []launch.Mount{bind("", "/x")}, err: "no host path"},
		{name: "unknown kind", in: []launch.Mount{{Kind: "nfs", Target: "/x"}}, err: `unknown kind "nfs"`},
		{name: "negative tmpfs size", in: []launch.Mount{tmpfs("/t", -1)}, err: "negative size"},
		{name: "two mounts on one path", in: []launch.Mount{bind(dir, "/x"), tmpfs("/x", 0)}, err: "two mounts on one guest path"},
		{name: "one file two disks", in: []launch.Mount{disk(img, "/a"), disk(img, "/b")}, err: "attached twice"},
		{name: "one file two disks through a symlink", in: []launch.Mount{disk(img, "/a"), disk(link, "/b")}, err: "attached twice"},
		{name: "one file two binds is fine", in: []launch.Mount{bind(dir, "/a"), bind(dir, "/b")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := append([]launch.Mount(nil), tc.in...)
			err := normalizeMounts(got)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("normalizeMounts = %v; want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("normalizeMounts = %v", err)
			}
			want := tc.want
			if want == nil {
				want = tc.in
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("normalizeMounts = %+v; want %+v", got, want)
			}
		})
	}
}

func TestFileBindErrorIs(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]bool{"f": true, "a:b": false, "a;b": false} {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c := Config{Rootfs: t.TempDir(), Mounts: []launch.Mount{{Kind: launch.MountBind, Source: f, Target: "/f"}}}
		if err := c.normalize(); (err == nil) != want || (err != nil && !errors.Is(err, ErrFileBind)) {
			t.Errorf("normalize(bind of file %q) = %v; want ok=%v or ErrFileBind", name, err, want)
		}
	}
}

func TestLaunchMountsRederiveVolumes(t *testing.T) {
	h := home.Home{Root: "/new-home"}
	in := []launch.Mount{
		{Kind: launch.MountBind, Volume: "data", Source: "/old-home/volumes/data/data", Target: "/data"},
		{Kind: launch.MountBind, Source: "/src", Target: "/src", ReadOnly: true},
	}
	got := launchMounts(h, in)
	if got[0].Source != "/new-home/volumes/data/data" || got[1].Source != "/src" {
		t.Errorf("launchMounts = %+v", got)
	}
	if in[0].Source != "/old-home/volumes/data/data" {
		t.Errorf("launchMounts changed its argument")
	}
}

// TestCreateMounts checks that Create creates a missing named volume,
// stores absolute sources and hands the mounts to the sandbox process, and
// that the volume outlives the sandbox. A volume's quota goes with its
// bind.
func TestCreateMounts(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	share := t.TempDir()
	if _, err := volume.Create(m.Home, "q", 8<<20, nil); err != nil {
		t.Fatal(err)
	}
	cfg.Mounts = []launch.Mount{
		{Kind: launch.MountBind, Source: share, Target: "/share", ReadOnly: true},
		{Kind: launch.MountBind, Volume: "cache", Target: "/cache"},
		{Kind: launch.MountTmpfs, Target: "/scratch", SizeMiB: 16},
		{Kind: launch.MountBind, Volume: "q", Target: "/q"},
	}
	p := mustCreate(t, m, "vols", cfg, false)
	want := append([]launch.Mount(nil), cfg.Mounts...)
	want[1].Source = volume.DataDir(m.Home, "cache")
	want[3].Source = volume.DataDir(m.Home, "q")
	want[3].QuotaBytes = 8 << 20

	if _, err := volume.Get(m.Home, "cache"); err != nil {
		t.Fatalf("named volume not created: %v", err)
	}
	in, err := m.Get(t.Context(), "vols")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.Config.Mounts, want) {
		t.Errorf("stored mounts = %+v; want %+v", in.Config.Mounts, want)
	}
	b, err := os.ReadFile(fakeMarker(m.Home, "vols", "mounts"))
	if err != nil {
		t.Fatal(err)
	}
	var launched []launch.Mount
	if err := json.Unmarshal(b, &launched); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(launched, want) {
		t.Errorf("launch mounts = %+v; want %+v", launched, want)
	}

	if err := m.Stop(t.Context(), "vols", 0, true); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	if err := m.Remove(t.Context(), "vols", false); err != nil {
		t.Fatal(err)
	}
	if _, err := volume.Get(m.Home, "cache"); err != nil {
		t.Errorf("volume removed with its sandbox: %v", err)
	}
}

// TestCreateLiveRoot checks that a live root is handed to the sandbox
// process as the root share, without packing it or creating an upper.
func TestCreateLiveRoot(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	cfg.RootfsLive = true
	mustCreate(t, m, "live", cfg, false)
	b, err := os.ReadFile(fakeMarker(m.Home, "live", "root"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "share="+cfg.Rootfs+" ro=false lower= upper="; got != want {
		t.Errorf("launch root = %q; want %q", got, want)
	}
	if _, err := os.Stat(m.Home.UpperPath("live")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("upper of a live root: stat = %v; want ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(m.Home.CacheDir(), "rootfs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("live root was packed: stat cache = %v; want ErrNotExist", err)
	}
	in, err := m.Get(t.Context(), "live")
	if err != nil {
		t.Fatal(err)
	}
	if !in.Config.RootfsLive || in.Config.Rootfs != cfg.Rootfs {
		t.Errorf("stored config rootfs = %q live=%v; want %q live", in.Config.Rootfs, in.Config.RootfsLive, cfg.Rootfs)
	}
}

func TestCreateLiveRootRejects(t *testing.T) {
	m, cfg := fakeManager(t, fakeReady)
	cfg.RootfsLive = true
	_, err := m.Create(t.Context(), "patched", cfg, CreateOptions{Patches: []rootfs.Patch{{Kind: rootfs.PatchMkdir, Path: "/x", Mode: 0o755}}})
	if !errors.Is(err, ErrLivePatches) {
		t.Errorf("Create(live, patches) = %v; want ErrLivePatches", err)
	}
	img := Config{Image: "alpine", RootfsLive: true}
	if err := img.normalize(); err == nil || !strings.Contains(err.Error(), "live root needs a root directory") {
		t.Errorf("normalize(image, live) = %v; want the live root error", err)
	}
}

func TestWithImageTmp(t *testing.T) {
	tmp := func(mib int) launch.Mount { return launch.Mount{Kind: launch.MountTmpfs, Target: "/tmp", SizeMiB: mib} }
	bind := func(target string) launch.Mount {
		return launch.Mount{Kind: launch.MountBind, Source: "/src", Target: target}
	}
	tests := []struct {
		name string
		cfg  Config
		in   []launch.Mount
		want []launch.Mount
	}{
		{"image, default memory", Config{Image: "alpine", MemoryMiB: 512}, nil, []launch.Mount{tmp(128)}},
		{"image, small memory", Config{Image: "alpine", MemoryMiB: 2}, nil, []launch.Mount{tmp(1)}},
		{"image, large memory capped", Config{Image: "alpine", MemoryMiB: 16384}, nil, []launch.Mount{tmp(512)}},
		{"image, tmpfs first", Config{Image: "alpine", MemoryMiB: 1024}, []launch.Mount{bind("/data")},
			[]launch.Mount{tmp(256), bind("/data")}},
		{"image, user's /tmp", Config{Image: "alpine", MemoryMiB: 512}, []launch.Mount{bind("/tmp")}, []launch.Mount{bind("/tmp")}},
		{"image, mount under /tmp", Config{Image: "alpine", MemoryMiB: 512}, []launch.Mount{bind("/tmp/x")},
			[]launch.Mount{bind("/tmp/x")}},
		{"image, /tmpdata is not /tmp", Config{Image: "alpine", MemoryMiB: 512}, []launch.Mount{bind("/tmpdata")},
			[]launch.Mount{tmp(128), bind("/tmpdata")}},
		{"host directory root", Config{Rootfs: "/r", MemoryMiB: 512}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withImageTmp(tt.cfg, tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("withImageTmp = %+v; want %+v", got, tt.want)
			}
		})
	}
}
