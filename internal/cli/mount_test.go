package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/launch"
)

func TestParseMountFlags(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	userHome, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	bind := func(src, dst string, ro bool) launch.Mount {
		return launch.Mount{Kind: launch.MountBind, Source: src, Target: dst, ReadOnly: ro}
	}
	tests := []struct {
		name  string
		flags mountFlags
		want  []launch.Mount
		err   string
	}{
		{name: "none"},
		{name: "absolute bind", flags: mountFlags{volumes: []string{"/srv/src:/src"}}, want: []launch.Mount{bind("/srv/src", "/src", false)}},
		{name: "read-only bind", flags: mountFlags{volumes: []string{"/srv:/srv:ro"}}, want: []launch.Mount{bind("/srv", "/srv", true)}},
		{name: "explicit rw", flags: mountFlags{volumes: []string{"/srv:/srv:rw"}}, want: []launch.Mount{bind("/srv", "/srv", false)}},
		{name: "relative bind", flags: mountFlags{volumes: []string{"./src:/src"}}, want: []launch.Mount{bind(filepath.Join(cwd, "src"), "/src", false)}},
		{name: "parent bind", flags: mountFlags{volumes: []string{"../x:/x"}}, want: []launch.Mount{bind(filepath.Join(filepath.Dir(cwd), "x"), "/x", false)}},
		{name: "dot bind", flags: mountFlags{volumes: []string{".:/work"}}, want: []launch.Mount{bind(cwd, "/work", false)}},
		{name: "tilde bind", flags: mountFlags{volumes: []string{"~/code:/code"}}, want: []launch.Mount{bind(filepath.Join(userHome, "code"), "/code", false)}},
		{name: "unclean host path cleaned", flags: mountFlags{volumes: []string{"/a/./b/:/b"}}, want: []launch.Mount{bind("/a/b", "/b", false)}},
		{
			name:  "named volume",
			flags: mountFlags{volumes: []string{"cache:/root/.cache", "models.v2:/models:ro"}},
			want: []launch.Mount{
				{Kind: launch.MountBind, Volume: "cache", Target: "/root/.cache"},
				{Kind: launch.MountBind, Volume: "models.v2", Target: "/models", ReadOnly: true},
			},
		},
		{
			name:  "tmpfs",
			flags: mountFlags{tmpfs: []string{"/tmp", "/scratch:64M", "/big:1G", "/n:128", "/m:32MiB"}},
			want: []launch.Mount{
				{Kind: launch.MountTmpfs, Target: "/tmp"},
				{Kind: launch.MountTmpfs, Target: "/scratch", SizeMiB: 64},
				{Kind: launch.MountTmpfs, Target: "/big", SizeMiB: 1024},
				{Kind: launch.MountTmpfs, Target: "/n", SizeMiB: 128},
				{Kind: launch.MountTmpfs, Target: "/m", SizeMiB: 32},
			},
		},
		{
			name:  "disks",
			flags: mountFlags{disks: []string{"/img/data.ext4:/data", "./ro.img:/ro:ro"}},
			want: []launch.Mount{
				{Kind: launch.MountDisk, Source: "/img/data.ext4", Target: "/data"},
				{Kind: launch.MountDisk, Source: filepath.Join(cwd, "ro.img"), Target: "/ro", ReadOnly: true},
			},
		},
		{
			name:  "kinds in flag order",
			flags: mountFlags{disks: []string{"/d.img:/d"}, tmpfs: []string{"/t"}, volumes: []string{"v:/v"}},
			want: []launch.Mount{
				{Kind: launch.MountBind, Volume: "v", Target: "/v"},
				{Kind: launch.MountTmpfs, Target: "/t"},
				{Kind: launch.MountDisk, Source: "/d.img", Target: "/d"},
			},
		},

		{name: "no colon", flags: mountFlags{volumes: []string{"/src"}}, err: `-v "/src": want SRC:DST[:ro]`},
		{name: "empty source", flags: mountFlags{volumes: []string{":/x"}}, err: `-v ":/x": want SRC:DST[:ro]`},
		{name: "empty target", flags: mountFlags{volumes: []string{"/x:"}}, err: `-v "/x:": want SRC:DST[:ro]`},
		{name: "too many fields", flags: mountFlags{volumes: []string{"/a:/b:ro:x"}}, err: "want SRC:DST[:ro]"},
		{name: "bad mode", flags: mountFlags{volumes: []string{"/a:/b:readonly"}}, err: `mode "readonly": want ro or rw`},
		{name: "bad volume name", flags: mountFlags{volumes: []string{"my vol:/v"}}, err: "a host path starts with /, ./, ../ or ~"},
		{name: "volume name with dot start", flags: mountFlags{volumes: []string{".cache:/v"}}, err: "must start with a letter or digit"},
		{name: "tilde user", flags: mountFlags{volumes: []string{"~bob/x:/x"}}, err: "only ~/ is expanded"},
		{name: "relative guest path", flags: mountFlags{volumes: []string{"/a:b"}}, err: `guest path "b" must be absolute, clean and not /`},
		{name: "guest root", flags: mountFlags{volumes: []string{"/a:/"}}, err: "not /"},
		{name: "semicolon in guest path", flags: mountFlags{volumes: []string{"/a:/b;c"}}, err: "must not contain"},
		{name: "tmpfs bad size", flags: mountFlags{tmpfs: []string{"/t:lots"}}, err: `--tmpfs "/t:lots": size "lots": want a size like 64M or 1G`},
		{name: "tmpfs zero size", flags: mountFlags{tmpfs: []string{"/t:0"}}, err: "want a size like 64M"},
		{name: "tmpfs relative", flags: mountFlags{tmpfs: []string{"tmp"}}, err: `--tmpfs "tmp": invalid mount: guest path "tmp"`},
		{name: "tmpfs empty", flags: mountFlags{tmpfs: []string{""}}, err: "must be absolute"},
		{name: "disk no guest path", flags: mountFlags{disks: []string{"/d.img"}}, err: `--disk "/d.img": want FILE:GUEST[:ro]`},
		{name: "disk bad mode", flags: mountFlags{disks: []string{"/d.img:/d:xfs"}}, err: `mode "xfs": want ro or rw`},
		{name: "disk guest root", flags: mountFlags{disks: []string{"/d.img:/"}}, err: "not /"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.flags.parse()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse() = %+v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse() = %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parse() = %+v; want %+v", got, tc.want)
			}
		})
	}
}
