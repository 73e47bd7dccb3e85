package msb

import (
	"reflect"
	"testing"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/sandbox"
)

func TestMountOptionsReachSandboxConfig(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want []launch.Mount
	}{
		{name: "none"},
		{
			name: "in order",
			opts: []Option{
				WithVolume("/src", "/work"),
				WithVolumeReadOnly("./ref", "/ref"),
				WithNamedVolume("cache", "/cache", false),
				WithNamedVolume("models", "/models", true),
				WithTmpfs("/tmp", 64),
				WithTmpfs("/run", 0),
				WithDisk("/img/data.ext4", "/data", false),
				WithDisk("/img/ro.img", "/ro", true),
			},
			want: []launch.Mount{
				{Kind: launch.MountBind, Source: "/src", Target: "/work"},
				{Kind: launch.MountBind, Source: "./ref", Target: "/ref", ReadOnly: true},
				{Kind: launch.MountBind, Volume: "cache", Target: "/cache"},
				{Kind: launch.MountBind, Volume: "models", Target: "/models", ReadOnly: true},
				{Kind: launch.MountTmpfs, Target: "/tmp", SizeMiB: 64},
				{Kind: launch.MountTmpfs, Target: "/run"},
				{Kind: launch.MountDisk, Source: "/img/data.ext4", Target: "/data"},
				{Kind: launch.MountDisk, Source: "/img/ro.img", Target: "/ro", ReadOnly: true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			for _, o := range tc.opts {
				o(&c)
			}
			if got := c.sandboxConfig().Mounts; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("sandboxConfig().Mounts = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestInfoMounts(t *testing.T) {
	in := sandbox.Info{Name: "x", Config: sandbox.Config{Mounts: []launch.Mount{
		{Kind: launch.MountBind, Volume: "v", Source: "/h/volumes/v/data", Target: "/v", ReadOnly: true},
		{Kind: launch.MountTmpfs, Target: "/t", SizeMiB: 8},
	}}}
	want := []Mount{
		{Kind: "bind", Volume: "v", Source: "/h/volumes/v/data", Target: "/v", ReadOnly: true},
		{Kind: "tmpfs", Target: "/t", SizeMiB: 8},
	}
	if got := toInfo(in).Mounts; !reflect.DeepEqual(got, want) {
		t.Errorf("toInfo().Mounts = %+v; want %+v", got, want)
	}
	if got := toInfo(sandbox.Info{}).Mounts; got != nil {
		t.Errorf("toInfo() without mounts = %+v; want nil", got)
	}
}
