package agent

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var netipCmp = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// configTests is the table of reference §12 "agentd" config cases; it also
// seeds FuzzParseConfig. wantErr is a substring of the error ("" = valid).
var configTests = []struct {
	name    string
	env     []string
	want    Config
	wantErr string
}{
	{name: "empty", env: nil, want: Config{}},
	{name: "empty values are unset", env: []string{"MSB_TMPFS=", "MSB_NET=", "MSB_BLOCK_ROOT="}, want: Config{}},
	{name: "other env goes to Env", env: []string{"PATH=/bin", "A=1", "MSB_HOSTNAME=box", "A=2"},
		want: Config{Hostname: "box", Env: []string{"PATH=/bin", "A=2"}}},

	// MSB_BLOCK_ROOT
	{name: "block root disk image", env: []string{"MSB_BLOCK_ROOT=kind=disk-image,device=/dev/vda"},
		want: Config{BlockRoot: &BlockRoot{Kind: BlockRootDiskImage, Device: "/dev/vda"}}},
	{name: "block root disk image fstype", env: []string{"MSB_BLOCK_ROOT=kind=disk-image,device=/dev/vda,fstype=ext4"},
		want: Config{BlockRoot: &BlockRoot{Kind: BlockRootDiskImage, Device: "/dev/vda", FSType: "ext4"}}},
	{name: "block root oci erofs", env: []string{"MSB_BLOCK_ROOT=kind=oci-erofs,lower=/dev/vda,upper=/dev/vdb,upper_fstype=ext4"},
		want: Config{BlockRoot: &BlockRoot{Kind: BlockRootOCIErofs, Lower: "/dev/vda", Upper: "/dev/vdb", UpperFSType: "ext4"}}},
	{name: "block root unknown kind", env: []string{"MSB_BLOCK_ROOT=kind=oci-flat,device=/dev/vda"}, wantErr: `MSB_BLOCK_ROOT: unknown kind "oci-flat"`},
	{name: "block root missing kind", env: []string{"MSB_BLOCK_ROOT=device=/dev/vda"}, wantErr: "MSB_BLOCK_ROOT: missing kind"},
	{name: "block root legacy bare device", env: []string{"MSB_BLOCK_ROOT=/dev/vda"}, wantErr: "MSB_BLOCK_ROOT: option \"/dev/vda\": want key=value"},
	{name: "block root missing device", env: []string{"MSB_BLOCK_ROOT=kind=disk-image"}, wantErr: "MSB_BLOCK_ROOT: kind disk-image: missing device"},
	{name: "block root missing upper", env: []string{"MSB_BLOCK_ROOT=kind=oci-erofs,lower=/dev/vda,upper_fstype=ext4"}, wantErr: "MSB_BLOCK_ROOT: kind oci-erofs: missing upper"},
	{name: "block root duplicate key", env: []string{"MSB_BLOCK_ROOT=kind=disk-image,device=/dev/vda,device=/dev/vdb"}, wantErr: `MSB_BLOCK_ROOT: duplicate option "device"`},
	{name: "block root unknown key", env: []string{"MSB_BLOCK_ROOT=kind=disk-image,device=/dev/vda,foo=1"}, wantErr: `MSB_BLOCK_ROOT: unknown option "foo"`},
	{name: "block root foreign key", env: []string{"MSB_BLOCK_ROOT=kind=disk-image,device=/dev/vda,upper=/dev/vdb"}, wantErr: `option "upper" not allowed`},
	{name: "block root relative device", env: []string{"MSB_BLOCK_ROOT=kind=disk-image,device=vda"}, wantErr: "not an absolute path"},

	// MSB_FS_ROOT
	{name: "fs root", env: []string{"MSB_FS_ROOT=tag=msb_root"},
		want: Config{FSRoot: &FSRoot{Tag: "msb_root"}}},
	{name: "fs root ro", env: []string{"MSB_FS_ROOT=tag=msb_root,ro"},
		want: Config{FSRoot: &FSRoot{Tag: "msb_root", ReadOnly: true}}},
	{name: "fs root rw first", env: []string{"MSB_FS_ROOT=rw,tag=r"},
		want: Config{FSRoot: &FSRoot{Tag: "r"}}},
	{name: "fs root missing tag", env: []string{"MSB_FS_ROOT=ro"}, wantErr: "MSB_FS_ROOT: missing tag"},
	{name: "fs root empty tag", env: []string{"MSB_FS_ROOT=tag="}, wantErr: "MSB_FS_ROOT: empty tag"},
	{name: "fs root tag with slash", env: []string{"MSB_FS_ROOT=tag=a/b"}, wantErr: `tag "a/b": invalid`},
	{name: "fs root bare tag", env: []string{"MSB_FS_ROOT=msb_root"}, wantErr: `unknown option "msb_root"`},
	{name: "fs root ro with value", env: []string{"MSB_FS_ROOT=tag=r,ro=1"}, wantErr: `unknown option "ro=1"`},
	{name: "fs root unknown option", env: []string{"MSB_FS_ROOT=tag=r,dax"}, wantErr: `unknown option "dax"`},
	{name: "fs root duplicate tag", env: []string{"MSB_FS_ROOT=tag=a,tag=b"}, wantErr: `duplicate option "tag"`},
	{name: "fs root ro and rw", env: []string{"MSB_FS_ROOT=tag=a,ro,rw"}, wantErr: `duplicate option "rw"`},
	{name: "fs root and block root", env: []string{"MSB_FS_ROOT=tag=r", "MSB_BLOCK_ROOT=kind=disk-image,device=/dev/vda"},
		wantErr: "MSB_BLOCK_ROOT and MSB_FS_ROOT both set"},

	// MSB_DIR_MOUNTS
	{name: "dir mounts", env: []string{"MSB_DIR_MOUNTS=data_1234abcd:/data;cfg_1:/etc/cfg:ro"},
		want: Config{DirMounts: []DirMount{{Tag: "data_1234abcd", Path: "/data"}, {Tag: "cfg_1", Path: "/etc/cfg", ReadOnly: true}}}},
	{name: "dir mount relative path", env: []string{"MSB_DIR_MOUNTS=t:data"}, wantErr: `MSB_DIR_MOUNTS: entry "t:data": path "data": not absolute`},
	{name: "dir mount root", env: []string{"MSB_DIR_MOUNTS=t:/"}, wantErr: `path "/" not allowed`},
	{name: "dir mount empty tag", env: []string{"MSB_DIR_MOUNTS=:/data"}, wantErr: "empty tag"},
	{name: "dir mount bad flag", env: []string{"MSB_DIR_MOUNTS=t:/data:rx"}, wantErr: `unknown flag "rx"`},
	{name: "dir mount too many fields", env: []string{"MSB_DIR_MOUNTS=t:/data:ro:x"}, wantErr: "want tag:/path[:ro]"},

	// MSB_FILE_MOUNTS
	{name: "file mount", env: []string{"MSB_FILE_MOUNTS=fm_1:app.conf:/etc/app.conf"},
		want: Config{FileMounts: []FileMount{{Tag: "fm_1", File: "app.conf", Path: "/etc/app.conf"}}}},
	{name: "file mount ro", env: []string{"MSB_FILE_MOUNTS=fm_1:a:/a:ro;fm_2:b:/b"},
		want: Config{FileMounts: []FileMount{{Tag: "fm_1", File: "a", Path: "/a", ReadOnly: true}, {Tag: "fm_2", File: "b", Path: "/b"}}}},
	{name: "file mount missing path", env: []string{"MSB_FILE_MOUNTS=fm_1:a"}, wantErr: "want tag:file:/path[:ro]"},
	{name: "file mount empty file", env: []string{"MSB_FILE_MOUNTS=fm_1::/a"}, wantErr: "empty file name"},
	{name: "file mount file with slash", env: []string{"MSB_FILE_MOUNTS=fm_1:x/y:/a"}, wantErr: `file name "x/y": invalid`},
	{name: "file mount dotdot", env: []string{"MSB_FILE_MOUNTS=fm_1:..:/a"}, wantErr: `file name "..": invalid`},
	{name: "file mount relative target", env: []string{"MSB_FILE_MOUNTS=fm_1:a:a"}, wantErr: "not absolute"},
	{name: "file mount bad flag", env: []string{"MSB_FILE_MOUNTS=fm_1:a:/a:rw2"}, wantErr: `unknown flag "rw2"`},

	// MSB_DISK_MOUNTS
	{name: "disk mount", env: []string{"MSB_DISK_MOUNTS=disk1:/mnt/d"},
		want: Config{DiskMounts: []DiskMount{{ID: "disk1", Path: "/mnt/d"}}}},
	{name: "disk mount fstype", env: []string{"MSB_DISK_MOUNTS=disk1:/mnt/d:ext4"},
		want: Config{DiskMounts: []DiskMount{{ID: "disk1", Path: "/mnt/d", FSType: "ext4"}}}},
	{name: "disk mount fstype ro", env: []string{"MSB_DISK_MOUNTS=disk1:/mnt/d:xfs:ro"},
		want: Config{DiskMounts: []DiskMount{{ID: "disk1", Path: "/mnt/d", FSType: "xfs", ReadOnly: true}}}},
	{name: "disk mount ro without fstype", env: []string{"MSB_DISK_MOUNTS=disk1:/mnt/d::ro"},
		want: Config{DiskMounts: []DiskMount{{ID: "disk1", Path: "/mnt/d", ReadOnly: true}}}},
	{name: "disk mount short ro", env: []string{"MSB_DISK_MOUNTS=disk1:/mnt/d:ro"},
		want: Config{DiskMounts: []DiskMount{{ID: "disk1", Path: "/mnt/d", ReadOnly: true}}}},
	{name: "disk mounts multiple", env: []string{"MSB_DISK_MOUNTS=a:/a;b:/b::ro;"},
		want: Config{DiskMounts: []DiskMount{{ID: "a", Path: "/a"}, {ID: "b", Path: "/b", ReadOnly: true}}}},
	{name: "disk mount missing path", env: []string{"MSB_DISK_MOUNTS=disk1"}, wantErr: "want id:/path[:fstype][:ro]"},
	{name: "disk mount empty id", env: []string{"MSB_DISK_MOUNTS=:/a"}, wantErr: "empty id"},
	{name: "disk mount bad fstype", env: []string{"MSB_DISK_MOUNTS=d:/a:ex t4"}, wantErr: `fstype "ex t4": invalid`},
	{name: "disk mount bad flag", env: []string{"MSB_DISK_MOUNTS=d:/a:ext4:rox"}, wantErr: `unknown flag "rox"`},
	{name: "disk mount too many fields", env: []string{"MSB_DISK_MOUNTS=d:/a:ext4:ro:x"}, wantErr: "want id:/path[:fstype][:ro]"},

	// MSB_TMPFS
	{name: "tmpfs path only", env: []string{"MSB_TMPFS=/scratch"}, want: Config{Tmpfs: []TmpfsMount{{Path: "/scratch", Mode: 0o755}}}},
	{name: "tmpfs size", env: []string{"MSB_TMPFS=/scratch,size=64"}, want: Config{Tmpfs: []TmpfsMount{{Path: "/scratch", SizeMiB: 64, Mode: 0o755}}}},
	{name: "tmpfs noexec", env: []string{"MSB_TMPFS=/s,noexec"}, want: Config{Tmpfs: []TmpfsMount{{Path: "/s", Mode: 0o755, NoExec: true}}}},
	{name: "tmpfs ro", env: []string{"MSB_TMPFS=/s,ro"}, want: Config{Tmpfs: []TmpfsMount{{Path: "/s", Mode: 0o755, ReadOnly: true}}}},
	{name: "tmpfs default rw and tmp mode", env: []string{"MSB_TMPFS=/tmp;/var/tmp/"},
		want: Config{Tmpfs: []TmpfsMount{{Path: "/tmp", Mode: 0o1777}, {Path: "/var/tmp/", Mode: 0o1777}}}},
	{name: "tmpfs octal mode", env: []string{"MSB_TMPFS=/s,mode=0700"}, want: Config{Tmpfs: []TmpfsMount{{Path: "/s", Mode: 0o700}}}},
	{name: "tmpfs multi", env: []string{"MSB_TMPFS=/a,size=1,mode=1777,noexec,ro;/b"},
		want: Config{Tmpfs: []TmpfsMount{{Path: "/a", SizeMiB: 1, Mode: 0o1777, NoExec: true, ReadOnly: true}, {Path: "/b", Mode: 0o755}}}},
	{name: "tmpfs unknown option", env: []string{"MSB_TMPFS=x,foo"}, wantErr: `MSB_TMPFS: entry "x,foo": path "x": not absolute`},
	{name: "tmpfs unknown option abs", env: []string{"MSB_TMPFS=/x,foo"}, wantErr: `MSB_TMPFS: entry "/x,foo": unknown option "foo"`},
	{name: "tmpfs bad size", env: []string{"MSB_TMPFS=/x,size=big"}, wantErr: `bad size "big"`},
	{name: "tmpfs zero size", env: []string{"MSB_TMPFS=/x,size=0"}, wantErr: `bad size "0"`},
	{name: "tmpfs bad mode", env: []string{"MSB_TMPFS=/x,mode=999"}, wantErr: `bad mode "999"`},
	{name: "tmpfs empty path", env: []string{"MSB_TMPFS=,size=1"}, wantErr: "empty path"},
	{name: "tmpfs duplicate option", env: []string{"MSB_TMPFS=/x,size=1,size=2"}, wantErr: `duplicate option "size"`},

	// MSB_HOSTNAME, MSB_HOST_ALIAS, MSB_USER
	{name: "hostname and alias", env: []string{"MSB_HOSTNAME=my-box", "MSB_HOST_ALIAS=host.microsandbox.internal"},
		want: Config{Hostname: "my-box", HostAlias: "host.microsandbox.internal"}},
	{name: "bad hostname", env: []string{"MSB_HOSTNAME=a b"}, wantErr: "MSB_HOSTNAME: \"a b\": invalid host name"},
	{name: "long hostname", env: []string{"MSB_HOSTNAME=" + strings.Repeat("a", 65)}, wantErr: "longer than 64 bytes"},
	{name: "user", env: []string{"MSB_USER=1000:100"}, want: Config{User: "1000:100"}},
	{name: "user by name", env: []string{"MSB_USER=app"}, want: Config{User: "app"}},
	{name: "user empty group", env: []string{"MSB_USER=app:"}, wantErr: "MSB_USER"},

	// MSB_NET, MSB_NET_IPV4, MSB_NET_IPV6
	{name: "net full", env: []string{
		"MSB_NET=iface=eth0,mac=02:6d:73:00:01:02,mtu=1400",
		"MSB_NET_IPV4=addr=100.96.0.6/30,gw=100.96.0.5,dns=100.96.0.5",
		"MSB_NET_IPV6=addr=fd42:6d73:62:1::2/64,gw=fd42:6d73:62:1::1,dns=fd42:6d73:62:1::1",
	}, want: Config{
		Net:  &NetConfig{Iface: "eth0", MAC: mustMAC("02:6d:73:00:01:02"), MTU: 1400},
		IPv4: &IPConfig{Addr: netip.MustParsePrefix("100.96.0.6/30"), Gateway: netip.MustParseAddr("100.96.0.5"), DNS: netip.MustParseAddr("100.96.0.5")},
		IPv6: &IPConfig{Addr: netip.MustParsePrefix("fd42:6d73:62:1::2/64"), Gateway: netip.MustParseAddr("fd42:6d73:62:1::1"), DNS: netip.MustParseAddr("fd42:6d73:62:1::1")},
	}},
	{name: "net default mtu", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01"},
		want: Config{Net: &NetConfig{Iface: "eth0", MAC: mustMAC("02:00:00:00:00:01"), MTU: 1500}}},
	{name: "net v4 without dns", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01", "MSB_NET_IPV4=addr=10.0.0.2/24,gw=10.0.0.1"},
		want: Config{Net: &NetConfig{Iface: "eth0", MAC: mustMAC("02:00:00:00:00:01"), MTU: 1500},
			IPv4: &IPConfig{Addr: netip.MustParsePrefix("10.0.0.2/24"), Gateway: netip.MustParseAddr("10.0.0.1")}}},
	{name: "net missing iface", env: []string{"MSB_NET=mac=02:00:00:00:00:01"}, wantErr: "MSB_NET: missing iface"},
	{name: "net missing mac", env: []string{"MSB_NET=iface=eth0"}, wantErr: "MSB_NET: missing mac"},
	{name: "net unknown option", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01,speed=10"}, wantErr: `MSB_NET: unknown option "speed"`},
	{name: "net invalid mac", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00"}, wantErr: `MSB_NET: mac "02:00:00:00:00": invalid`},
	{name: "net long mac", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:00:00:01"}, wantErr: "invalid"},
	{name: "net bad mtu", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01,mtu=10"}, wantErr: `mtu "10"`},
	{name: "v4 missing addr", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01", "MSB_NET_IPV4=gw=10.0.0.1"}, wantErr: "MSB_NET_IPV4: missing addr"},
	{name: "v4 not a CIDR", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01", "MSB_NET_IPV4=addr=10.0.0.2"}, wantErr: "want an IPv4 CIDR"},
	{name: "v4 with v6 addr", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01", "MSB_NET_IPV4=addr=fd00::2/64"}, wantErr: "want an IPv4 CIDR"},
	{name: "v6 with v4 gw", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01", "MSB_NET_IPV6=addr=fd00::2/64,gw=10.0.0.1"}, wantErr: `MSB_NET_IPV6: gw "10.0.0.1": want an IPv6 address`},
	{name: "v6 bad prefix", env: []string{"MSB_NET=iface=eth0,mac=02:00:00:00:00:01", "MSB_NET_IPV6=addr=fd00::2/129"}, wantErr: "want an IPv6 CIDR"},
	{name: "ip without net", env: []string{"MSB_NET_IPV4=addr=10.0.0.2/24"}, wantErr: "without MSB_NET"},

	// MSB_RLIMITS
	{name: "rlimits", env: []string{"MSB_RLIMITS=nofile=1024:4096;nproc=100;core=unlimited"},
		want: Config{Rlimits: []Rlimit{{"nofile", 1024, 4096}, {"nproc", 100, 100}, {"core", RlimInfinity, RlimInfinity}}}},
	{name: "rlimits RLIMIT_ prefix", env: []string{"MSB_RLIMITS=RLIMIT_NOFILE=10"}, want: Config{Rlimits: []Rlimit{{"nofile", 10, 10}}}},
	{name: "rlimits unknown", env: []string{"MSB_RLIMITS=files=10"}, wantErr: `unknown resource "files"`},
	{name: "rlimits duplicate", env: []string{"MSB_RLIMITS=nofile=10;nofile=20"}, wantErr: `duplicate resource "nofile"`},
	{name: "rlimits soft above hard", env: []string{"MSB_RLIMITS=nofile=20:10"}, wantErr: "soft limit above hard limit"},
	{name: "rlimits bad value", env: []string{"MSB_RLIMITS=nofile=ten"}, wantErr: `soft: "ten": want a number or unlimited`},

	// MSB_PROBE
	{name: "probe", env: []string{"MSB_PROBE=1"}, want: Config{Probe: true}},
	{name: "probe bad", env: []string{"MSB_PROBE=yes"}, wantErr: "MSB_PROBE"},
	// MSB_INIT
	{name: "init", env: []string{`MSB_INIT={"path":"/sbin/init","args":["-v"],"env":["A=1"]}`},
		want: Config{Init: &InitSpec{Path: "/sbin/init", Args: []string{"-v"}, Env: []string{"A=1"}}}},
	{name: "init auto", env: []string{`MSB_INIT={"path":"auto"}`}, want: Config{Init: &InitSpec{Path: "auto"}}},
	{name: "init relative", env: []string{`MSB_INIT={"path":"init"}`}, wantErr: "MSB_INIT"},
	{name: "init not json", env: []string{`MSB_INIT=/sbin/init`}, wantErr: "MSB_INIT"},
	{name: "init unknown field", env: []string{`MSB_INIT={"path":"auto","x":1}`}, wantErr: "MSB_INIT"},
	{name: "init bad env", env: []string{`MSB_INIT={"path":"auto","env":["NOEQ"]}`}, wantErr: "MSB_INIT"},
	// MSB_LOG_LEVEL
	{name: "log level", env: []string{"MSB_LOG_LEVEL=debug"}, want: Config{LogLevel: "debug"}},
	{name: "log level bad", env: []string{"MSB_LOG_LEVEL=loud"}, wantErr: "MSB_LOG_LEVEL"},
	{name: "clock", env: []string{"MSB_CLOCK_NS=1764000000123456789"}, want: Config{ClockNs: 1764000000123456789}},
	{name: "clock bad", env: []string{"MSB_CLOCK_NS=soon"}, wantErr: "MSB_CLOCK_NS"},
	{name: "clock negative", env: []string{"MSB_CLOCK_NS=-5"}, wantErr: "MSB_CLOCK_NS"},

	{name: "several errors are all reported", env: []string{"MSB_TMPFS=/x,foo", "MSB_NET=iface=eth0"}, wantErr: "MSB_NET: missing mac"},
}

func TestParseConfig(t *testing.T) {
	for _, tc := range configTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v; want none", err)
			}
			if d := cmp.Diff(tc.want, got, netipCmp); d != "" {
				t.Errorf("config mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		environ []string
		file    string // "" = no file
		want    Config
		wantErr string
	}{
		{name: "no file", environ: []string{"MSB_HOSTNAME=a", "X=1"}, want: Config{Hostname: "a", Env: []string{"X=1"}}},
		{
			name:    "file overrides and extends",
			environ: []string{"MSB_HOSTNAME=a", "X=1", "PATH=/bin"},
			file:    "MSB_HOSTNAME=b\x00X=2\x00SECRET=a=b c\x00\x00",
			want:    Config{Hostname: "b", Env: []string{"X=2", "PATH=/bin", "SECRET=a=b c"}},
		},
		{name: "file entry without =", file: "MSB_HOSTNAME=b\x00junk\x00", wantErr: `entry 1: want K=V, got "junk"`},
		{name: "file entry with empty key", file: "=x", wantErr: "entry 0: want K=V"},
		{name: "file value error names the variable", file: "MSB_TMPFS=/x,foo", wantErr: `MSB_TMPFS: entry "/x,foo": unknown option "foo"`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "boot.env"+string(rune('a'+i)))
			if tc.file != "" {
				if err := os.WriteFile(p, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := LoadConfig(tc.environ, p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if d := cmp.Diff(tc.want, got, netipCmp); d != "" {
				t.Errorf("config mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	got := MergeEnv([]string{"A=1", "B=2", "A=3"}, []string{"B=x", "C=y", "NOEQ"})
	want := []string{"A=3", "B=x", "C=y", "NOEQ"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("MergeEnv (-want +got):\n%s", d)
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, tc := range configTests {
		f.Add(strings.Join(tc.env, "\x00"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(strings.Split(s, "\x00"))
		if err != nil {
			if c.BlockRoot != nil || c.FSRoot != nil || c.Env != nil {
				t.Errorf("config returned with error %v", err)
			}
			return
		}
		for _, r := range c.Rlimits {
			if r.Soft > r.Hard {
				t.Errorf("accepted soft %d > hard %d", r.Soft, r.Hard)
			}
		}
		for _, m := range c.Tmpfs {
			if checkGuestPath(m.Path) != nil || m.Mode > 0o7777 {
				t.Errorf("accepted tmpfs %+v", m)
			}
		}
		if c.FSRoot != nil && checkName("tag", c.FSRoot.Tag) != nil {
			t.Errorf("accepted fs root tag %q", c.FSRoot.Tag)
		}
		if c.Net != nil && len(c.Net.MAC) != 6 {
			t.Errorf("accepted MAC %v", c.Net.MAC)
		}
	})
}

func FuzzParseBootEnv(f *testing.F) {
	f.Add([]byte("A=1\x00B=2\x00"))
	f.Add([]byte("MSB_TMPFS=/x,foo\x00\x00junk"))
	f.Add([]byte("=x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseBootEnv(data)
		if err != nil {
			return
		}
		for _, kv := range env {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" || strings.Contains(kv, "\x00") {
				t.Errorf("accepted entry %q", kv)
			}
		}
	})
}
