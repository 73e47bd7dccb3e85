package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func intp(n int) *int { return &n }

var classifyTests = []struct {
	msg  string
	want Stage
}{
	{"build VM: qemu-system-x86_64 not found", StageBuildVM},
	{"VM enter: exit status 1", StageBuildVM},
	{"start tokio runtime: x", StageBuildVM},
	{"mount vol_1234abcd: no such file (os error 2)", StageMount},
	{"runtime mount: permission denied", StageMount},
	{"share: virtiofs daemon died", StageMount},
	{"rootfs: not a directory", StageImage},
	{"trampoline rootfs: x", StageImage},
	{"disk format: unknown value qcow3", StageImage},
	{"lookup: image not found", StageImage},
	{"network: start stack", StageNetwork},
	{"bind 127.0.0.1:8080", StageNetwork},
	{"listen: Address already in use (os error 98)", StageNetwork},
	{"smoltcp poll", StageNetwork},
	{"database connect: locked", StageConfig},
	{"serialize startup json", StageConfig},
	{"insert run: constraint", StageConfig},
	{"mark run failed: x", StageConfig},
	{"launch: config parse: bad json", StageConfig},
	{"invalid config: vcpus 0", StageConfig},
	{"io error: something (os error 5)", StageOther},
	{"", StageOther},
	// First match wins, in reference order.
	{"build VM: network device", StageBuildVM},
	{"mount x: image not found", StageMount},
	{"rootfs: network", StageImage},
	{"network: invalid config", StageNetwork},
	// Prefix rules are prefixes, not substrings.
	{"x: rootfs gone", StageOther},
	{"x: database gone", StageOther},
	{"remount /: busy", StageOther},
}

func TestClassify(t *testing.T) {
	for _, tc := range classifyTests {
		t.Run(tc.msg, func(t *testing.T) {
			if got := Classify(tc.msg); got != tc.want {
				t.Errorf("Classify(%q) = %q; want %q", tc.msg, got, tc.want)
			}
		})
	}
}

func TestClassifyPrefixConstants(t *testing.T) {
	tests := []struct {
		prefix string
		want   Stage
	}{
		{PrefixDatabaseConnect, StageConfig},
		{PrefixDatabasePragmas, StageConfig},
		{PrefixInsertRun, StageConfig},
		{PrefixMarkRunFailed, StageConfig},
		{PrefixSerializeStartup, StageConfig},
		{PrefixConfigParse, StageConfig},
		{PrefixInvalidConfig, StageConfig},
		{PrefixRootfs, StageImage},
		{PrefixTrampolineRootfs, StageImage},
		{PrefixDiskFormat, StageImage},
		{PrefixImageNotFound, StageImage},
		{PrefixRuntimeMount, StageMount},
		{PrefixMount + "tag:", StageMount},
		{PrefixBuildVM, StageBuildVM},
		{PrefixVMEnter, StageBuildVM},
		{PrefixNetwork, StageNetwork},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			msg := tc.prefix + " something broke"
			if got := Classify(msg); got != tc.want {
				t.Errorf("Classify(%q) = %q; want %q", msg, got, tc.want)
			}
		})
	}
}

func FuzzClassify(f *testing.F) {
	for _, tc := range classifyTests {
		f.Add(tc.msg)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		switch s := Classify(msg); s {
		case StageBuildVM, StageMount, StageImage, StageNetwork, StageConfig, StageOther:
		default:
			t.Fatalf("Classify(%q) = %q; not a stage", msg, s)
		}
		_ = ErrnoOf(errors.New(msg))
	})
}

func TestErrnoOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want *int
	}{
		{"nil", nil, nil},
		{"wrapped errno", fmt.Errorf("mount x: %w", &os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}), intp(2)},
		{"bare errno", syscall.EACCES, intp(13)},
		{"os error suffix", errors.New("io error: Address already in use (os error 98)"), intp(98)},
		{"os error suffix trailing space", errors.New("x (os error 2) "), intp(2)},
		{"os error not at end", errors.New("x (os error 2) then more"), nil},
		{"no errno", errors.New("build VM: bad"), nil},
		{"huge number", errors.New("x (os error 99999999999999)"), nil},
		{"errno wins over suffix", fmt.Errorf("x (os error 5): %w", syscall.EPERM), intp(1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ErrnoOf(tc.err)); diff != "" {
				t.Errorf("ErrnoOf(%v) mismatch (-want +got):\n%s", tc.err, diff)
			}
		})
	}
}

func TestNewBootError(t *testing.T) {
	before := time.Now()
	b := NewBootError(fmt.Errorf("%s open /nope: %w", PrefixRuntimeMount, syscall.ENOENT))
	if b.Stage != StageMount {
		t.Errorf("stage = %q; want %q", b.Stage, StageMount)
	}
	if b.Errno == nil || *b.Errno != 2 {
		t.Errorf("errno = %v; want 2", b.Errno)
	}
	if b.Time.Before(before.Add(-time.Second)) || b.Time.Location() != time.UTC {
		t.Errorf("time = %v; want now in UTC", b.Time)
	}
	if got, want := b.Hint(), HintMountNotFound; got != want {
		t.Errorf("hint = %q; want %q", got, want)
	}
}

func TestBootErrorRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		b    BootError
	}{
		{"with errno", BootError{Time: time.Date(2026, 5, 3, 10, 11, 12, 345_000_000, time.UTC), Stage: StageMount, Errno: intp(2), Message: "mount x: not found (os error 2)"}},
		{"null errno", BootError{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Stage: StageOther, Message: "héllo \"quoted\"\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "boot-error.json")
			if err := WriteBootError(path, tc.b); err != nil {
				t.Fatalf("WriteBootError: %v", err)
			}
			if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stat .tmp: got %v; want not exist", err)
			}
			got, err := ReadBootError(path)
			if err != nil {
				t.Fatalf("ReadBootError: %v", err)
			}
			if diff := cmp.Diff(&tc.b, got); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBootErrorJSONSchema(t *testing.T) {
	b := BootError{Time: time.Date(2026, 5, 3, 10, 11, 12, 345_678_000, time.FixedZone("x", 3600)), Stage: StageNetwork, Message: "m"}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"t": "2026-05-03T09:11:12.345Z", "stage": "network", "errno": nil, "message": "m"}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("schema mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(data), "\n  \"stage\"") {
		t.Errorf("got %s; want pretty-printed JSON", data)
	}
}

func TestReadBootErrorMissing(t *testing.T) {
	got, err := ReadBootError(filepath.Join(t.TempDir(), "boot-error.json"))
	if got != nil || err != nil {
		t.Errorf("ReadBootError(missing) = %v, %v; want nil, nil", got, err)
	}
}

func TestReadBootErrorInvalid(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"garbage", "not json"},
		{"bad time", `{"t":"yesterday","stage":"other","errno":null,"message":"x"}`},
		{"too large", `{"message":"` + strings.Repeat("a", maxBootErrorSize) + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "boot-error.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			if got, err := ReadBootError(path); err == nil {
				t.Errorf("ReadBootError = %v, nil; want error", got)
			}
		})
	}
}

func TestDeleteBootError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "boot-error.json")
	if err := DeleteBootError(path); err != nil {
		t.Errorf("DeleteBootError(missing) = %v; want nil", err)
	}
	if err := WriteBootError(path, BootError{Time: time.Now(), Stage: StageOther, Message: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := DeleteBootError(path); err != nil {
		t.Fatalf("DeleteBootError = %v; want nil", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after delete: %v; want not exist", err)
	}
}

func TestHint(t *testing.T) {
	tests := []struct {
		name  string
		stage Stage
		errno *int
		want  string
	}{
		{"mount enoent", StageMount, intp(2), HintMountNotFound},
		{"mount eacces", StageMount, intp(13), HintMountNoAccess},
		{"mount other errno", StageMount, intp(5), ""},
		{"mount no errno", StageMount, nil, ""},
		{"image enoent", StageImage, intp(2), HintImageNotFound},
		{"image eacces", StageImage, intp(13), ""},
		{"network eaddrinuse linux", StageNetwork, intp(98), HintPortInUse},
		{"network eaddrinuse darwin", StageNetwork, intp(48), HintPortInUse},
		{"build_vm enoent", StageBuildVM, intp(2), HintBuildVMMissing},
		{"build_vm eacces", StageBuildVM, intp(13), HintKVMAccess},
		{"build_vm none", StageBuildVM, nil, ""},
		{"config eacces", StageConfig, intp(13), HintDatabase},
		{"config erofs", StageConfig, intp(30), HintDatabase},
		{"config none", StageConfig, nil, ""},
		{"other", StageOther, intp(2), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Hint(tc.stage, tc.errno); got != tc.want {
				t.Errorf("Hint(%q, %v) = %q; want %q", tc.stage, tc.errno, got, tc.want)
			}
		})
	}
}

func TestBootErrorHint(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"qemu missing", fmt.Errorf("build VM: start qemu-system-x86_64: %w", &os.PathError{Op: "exec", Path: "qemu-system-x86_64", Err: syscall.ENOENT}), HintQEMU},
		{"qemu lookpath", errors.New(`build VM: exec: "qemu-system-x86_64": executable file not found in $PATH`), HintQEMU},
		{"qemu too old", errors.New("build VM: qemu 5.2 is too old (need 7.0)"), HintQEMU},
		{"kernel missing", fmt.Errorf("build VM: kernel /x/vmlinux: %w", syscall.ENOENT), HintKernel},
		{"kvm eacces", fmt.Errorf("build VM: open /dev/kvm: %w", syscall.EACCES), HintKVMAccess},
		{"kvm permission text", errors.New("build VM: open /dev/kvm: permission denied"), HintKVMAccess},
		{"build vm other", errors.New("build VM: vcpus must be > 0"), ""},
		{"database locked", errors.New("database connect: database is locked (5) (SQLITE_BUSY)"), HintDatabase},
		{"database unwritable", fmt.Errorf("database connect: open /h/db/msb.db: %w", syscall.EACCES), HintDatabase},
		{"database readonly", errors.New("insert run: attempt to write a readonly database"), HintDatabase},
		{"config parse", errors.New("config parse: bad json"), ""},
		{"port in use", errors.New("network: listen tcp 127.0.0.1:80: bind: address already in use (os error 98)"), HintPortInUse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBootError(tc.err)
			if got := b.Hint(); got != tc.want {
				t.Errorf("Hint for %q (stage %s, errno %v) = %q; want %q", b.Message, b.Stage, b.Errno, got, tc.want)
			}
		})
	}
}
