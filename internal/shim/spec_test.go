package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/msb-go/msb/internal/machine"
)

func TestProcessFromSpec(t *testing.T) {
	tests := []struct {
		name    string
		spec    specs.Spec
		want    process
		wantErr string
	}{
		{
			name: "ctr run defaults",
			spec: specs.Spec{Hostname: "c1", Process: &specs.Process{
				Args: []string{"sh", "-c", "echo hello; exit 3"},
				Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
				Cwd:  "/",
			}},
			want: process{Args: []string{"sh", "-c", "echo hello; exit 3"}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
				Cwd: "/", User: "0:0", Rows: 24, Cols: 80, Hostname: "c1"},
		},
		{
			name: "user, cwd, terminal, value with =",
			spec: specs.Spec{Process: &specs.Process{
				Args: []string{"id"}, Env: []string{"A=b=c", "EMPTY="}, Cwd: "/home/app", Terminal: true,
				User:        specs.User{UID: 1000, GID: 100, AdditionalGids: []uint32{5}},
				ConsoleSize: &specs.Box{Height: 33, Width: 101},
			}},
			want: process{Args: []string{"id"}, Env: []string{"A=b=c", "EMPTY="}, Cwd: "/home/app", User: "1000:100", Terminal: true,
				Rows: 33, Cols: 101},
		},
		{
			name: "empty cwd is /",
			spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}}},
			want: process{Args: []string{"true"}, Cwd: "/", User: "0:0", Rows: 24, Cols: 80},
		},
		{
			name: "pod network namespace by path",
			spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/cni-1234"}}}},
			want: process{Args: []string{"true"}, Cwd: "/", User: "0:0", Rows: 24, Cols: 80, NetNS: "/run/netns/cni-1234"},
		},
		{
			name: "new network namespace (no path) keeps msb's network",
			spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
				{Type: specs.NetworkNamespace}}}},
			want: process{Args: []string{"true"}, Cwd: "/", User: "0:0", Rows: 24, Cols: 80},
		},
		{
			name: "rlimits (containerd's default spec has RLIMIT_NOFILE)",
			spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}, {Type: "RLIMIT_CORE", Soft: ^uint64(0), Hard: ^uint64(0)}}}},
			want: process{Args: []string{"true"}, Cwd: "/", User: "0:0", Rows: 24, Cols: 80,
				Rlimits: []rlimit{{Name: "nofile", Soft: 1024, Hard: 1024}, {Name: "core", Soft: ^uint64(0), Hard: ^uint64(0)}}},
		},
		{name: "unknown rlimit", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}}}, wantErr: "not a resource"},
		{name: "rlimit without prefix", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Rlimits: []specs.POSIXRlimit{{Type: "NOFILE"}}}}, wantErr: "not a resource"},
		{name: "rlimit soft above hard", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}}}}, wantErr: "soft 2 above hard 1"},
		{name: "no process", spec: specs.Spec{}, wantErr: "no process"},
		{name: "no args", spec: specs.Spec{Process: &specs.Process{Cwd: "/"}}, wantErr: "no args"},
		{name: "windows command line", spec: specs.Spec{Process: &specs.Process{CommandLine: "cmd /c dir"}}, wantErr: "commandLine"},
		{name: "relative cwd", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Cwd: "tmp"}}, wantErr: "not absolute"},
		{name: "env without =", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Env: []string{"PATH"}}}, wantErr: "KEY=VALUE"},
		{name: "env without key", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, Env: []string{"=x"}}}, wantErr: "KEY=VALUE"},
		{name: "user name", spec: specs.Spec{Process: &specs.Process{Args: []string{"true"}, User: specs.User{Username: "app"}}}, wantErr: "user name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processFromSpec(&tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("processFromSpec() error = %v; want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("processFromSpec() error = %v", err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("processFromSpec() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	if _, err := readSpec(dir); err == nil || !strings.Contains(err.Error(), "read spec") {
		t.Fatalf("readSpec(no config.json) error = %v; want read spec", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSpec(dir); err == nil || !strings.Contains(err.Error(), "parse spec") {
		t.Fatalf("readSpec(bad json) error = %v; want parse spec", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"),
		[]byte(`{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := readSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != "rootfs" || s.Process.Args[0] != "sh" {
		t.Errorf("readSpec() = root %q args %q; want rootfs [sh]", s.Root.Path, s.Process.Args)
	}
}

func TestVMSize(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	res := func(limit, quota *int64, period *uint64) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: limit}, CPU: &specs.LinuxCPU{Quota: quota, Period: period}}}}
	}
	ann := func(kv ...string) *specs.Spec {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &specs.Spec{Annotations: m}
	}
	tests := []struct {
		name     string
		spec     *specs.Spec
		role     role
		wantCPUs int
		wantMiB  int
	}{
		{"no resources", &specs.Spec{}, roleAlone, 0, 0},
		{"256 MiB, 2 CPUs", res(i64(256<<20), i64(200000), u64(100000)), roleAlone, 2, 256 + guestReserveMiB},
		{"rounded up", res(i64(100<<20+1), i64(150000), u64(100000)), roleAlone, 2, 101 + guestReserveMiB},
		{"unlimited memory (-1)", res(i64(-1), nil, nil), roleAlone, 0, 0},
		{"tiny limit clamped up", res(i64(1), nil, nil), roleAlone, 0, 1 + guestReserveMiB},
		{"huge limit clamped down", res(i64(1<<62), i64(1<<40), u64(1)), roleAlone, machine.MaxVCPUs, machine.MaxMemoryMiB},
		{"zero period", res(nil, i64(100000), u64(0)), roleAlone, 0, 0},
		{"pod sums", ann(annotationSandboxMemory, "536870912", annotationSandboxCPUQuota, "300000", annotationSandboxCPUPeriod, "100000"), rolePodSandbox, 3, 512 + guestReserveMiB},
		{"pod bad annotations", ann(annotationSandboxMemory, "-5", annotationSandboxCPUQuota, "x"), rolePodSandbox, 0, 0},
		{"pod container sizes nothing", res(i64(256<<20), i64(200000), u64(100000)), rolePodContainer, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cpus, mib := vmSize(tc.spec, tc.role)
			if cpus != tc.wantCPUs || mib != tc.wantMiB {
				t.Errorf("vmSize = %d vCPUs, %d MiB; want %d, %d", cpus, mib, tc.wantCPUs, tc.wantMiB)
			}
		})
	}
}
