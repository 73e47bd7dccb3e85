package launch

import (
	"errors"
	"testing"
)

func TestMountValidate(t *testing.T) {
	tests := []struct {
		m    Mount
		want bool
	}{
		{Mount{Kind: MountBind, Source: "/src", Target: "/data"}, true},
		{Mount{Kind: MountBind, Source: "/src", Target: "/data", ReadOnly: true}, true},
		{Mount{Kind: MountTmpfs, Target: "/scratch", SizeMiB: 64}, true},
		{Mount{Kind: MountDisk, Source: "/img.raw", Target: "/mnt/d", FSType: "ext4"}, true},
		{Mount{Kind: MountBind, Source: "src", Target: "/data"}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "data"}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "/"}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "/a/../b"}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "/a:b"}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "/a;b"}, false},
		{Mount{Kind: MountTmpfs, Source: "/x", Target: "/t"}, false},
		{Mount{Kind: MountDisk, Source: "/img", Target: "/d", FSType: "ext4,rw"}, false},
		{Mount{Kind: "overlay", Source: "/x", Target: "/t"}, false},
		{Mount{Kind: MountTmpfs, Target: "/t", SizeMiB: -1}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "/data", QuotaBytes: 1 << 20}, true},
		{Mount{Kind: MountBind, Source: "/src", Target: "/data", QuotaBytes: -1}, false},
		{Mount{Kind: MountTmpfs, Target: "/t", QuotaBytes: 1 << 20}, false},
		{Mount{Kind: MountDisk, Source: "/img", Target: "/d", QuotaBytes: 1 << 20}, false},
		{Mount{Kind: MountBind, Source: "/src", Target: "/pod", Submounts: true}, true},
		{Mount{Kind: MountBind, Source: "/src", Target: "/pod", Submounts: true, QuotaBytes: 1 << 20}, false},
		{Mount{Kind: MountTmpfs, Target: "/t", Submounts: true}, false},
	}
	for _, tc := range tests {
		err := tc.m.Validate()
		if (err == nil) != tc.want {
			t.Errorf("%+v.Validate() = %v; want ok=%v", tc.m, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrBadMount) {
			t.Errorf("%+v.Validate() = %v; want ErrBadMount", tc.m, err)
		}
	}
}
