package nested

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var watcherTests = []struct {
	name     string
	console  string
	marks    []string // names
	uptimes  []time.Duration
	exitSeen bool
	exitCode int
	setupErr string
	// restartAt is the offset of a restart's first line (0: none).
	restartAt int64
}{
	{name: "empty"},
	{
		name:     "full run",
		console:  "[    0.1] noise\r\nnested: mark init uptime=1.79\r\nnested: mark modules-loaded uptime=2.20\r\nhello\r\nnested: exit=0\r\n",
		marks:    []string{"init", "modules-loaded"},
		uptimes:  []time.Duration{1790 * time.Millisecond, 2200 * time.Millisecond},
		exitSeen: true,
	},
	{name: "exit code", console: "nested: exit=7\n", exitSeen: true, exitCode: 7},
	{name: "last line without newline", console: "nested: exit=3", exitSeen: true, exitCode: 3},
	{name: "first exit wins", console: "nested: exit=1\nnested: exit=2\n", exitSeen: true, exitCode: 1},
	{name: "exit out of range", console: "nested: exit=256\nnested: exit=-1\nnested: exit=x\n"},
	{name: "exit marker not at line start", console: "echo nested: exit=0\n"},
	{name: "mark without uptime", console: "nested: mark step\n", marks: []string{"step"}, uptimes: []time.Duration{0}},
	{name: "mark with bad uptime", console: "nested: mark step uptime=-3\nnested: mark x uptime=NaN\n", marks: []string{"step", "x"}, uptimes: []time.Duration{0, 0}},
	{name: "mark without name", console: "nested: mark \n"},
	{
		name:     "setup failure",
		console:  "nested: mark init uptime=1\nnested: setup failed: insmod kvm-amd.ko: the L1 CPU has no svm flag\nnested: exit=0\n",
		marks:    []string{"init"},
		uptimes:  []time.Duration{time.Second},
		setupErr: "insmod kvm-amd.ko: the L1 CPU has no svm flag",
	},
	{
		name:      "restart after exit is cut",
		console:   "nested: mark init uptime=1\nnested: exit=0\r\n[ 9.1] reboot: Restarting system\r\nnested: mark init uptime=1\r\nnested: exit=1\r\n",
		marks:     []string{"init"},
		uptimes:   []time.Duration{time.Second},
		exitSeen:  true,
		restartAt: int64(len("nested: mark init uptime=1\nnested: exit=0\r\n[ 9.1] reboot: Restarting system\r\n")),
	},
	{name: "marks after exit are ignored", console: "nested: exit=0\nnested: mark late\n", exitSeen: true},
	{name: "init mark before any end is no restart", console: "nested: mark init\nnested: mark init\n", marks: []string{"init", "init"}, uptimes: []time.Duration{0, 0}},
	{name: "setup failure without reason", console: "nested: setup failed: \n", setupErr: "(no reason given)"},
	{name: "overlong line is cut", console: strings.Repeat("x", 2*maxLine) + "\nnested: exit=5\n", exitSeen: true, exitCode: 5},
}

func TestWatcher(t *testing.T) {
	for _, tt := range watcherTests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWatcher(time.Now())
			// Byte by byte and in one write must agree: QEMU's pipe splits
			// lines anywhere.
			for i := range len(tt.console) {
				if _, err := w.Write([]byte{tt.console[i]}); err != nil {
					t.Fatal(err)
				}
			}
			w.flush()
			var names []string
			var uptimes []time.Duration
			for _, m := range w.marks {
				names = append(names, m.Name)
				uptimes = append(uptimes, m.Uptime)
			}
			if diff := cmp.Diff(tt.marks, names, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("marks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.uptimes, uptimes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("uptimes (-want +got):\n%s", diff)
			}
			if w.exitSeen != tt.exitSeen || w.exitCode != tt.exitCode {
				t.Errorf("exit = %t, %d; want %t, %d", w.exitSeen, w.exitCode, tt.exitSeen, tt.exitCode)
			}
			if w.setupErr != tt.setupErr {
				t.Errorf("setup error = %q; want %q", w.setupErr, tt.setupErr)
			}
			select {
			case <-w.exited:
				if !tt.exitSeen && tt.setupErr == "" {
					t.Errorf("exited signalled without an exit or setup marker")
				}
			default:
				if tt.exitSeen || tt.setupErr != "" {
					t.Errorf("exited not signalled")
				}
			}
			if w.restartAt != tt.restartAt {
				t.Errorf("restart offset = %d; want %d", w.restartAt, tt.restartAt)
			}
			select {
			case <-w.restarted:
				if tt.restartAt == 0 {
					t.Errorf("restarted signalled without a restart")
				}
			default:
				if tt.restartAt != 0 {
					t.Errorf("restarted not signalled")
				}
			}
			if len(w.line) > maxLine {
				t.Errorf("kept a %d-byte partial line; want at most %d", len(w.line), maxLine)
			}
		})
	}
}

// FuzzWatcher feeds arbitrary console bytes (L1 prints what its test
// programs and nested guests print) split at an arbitrary point.
func FuzzWatcher(f *testing.F) {
	for _, tt := range watcherTests {
		f.Add([]byte(tt.console), uint16(len(tt.console)/2))
	}
	f.Fuzz(func(t *testing.T, console []byte, split uint16) {
		w := newWatcher(time.Now())
		at := min(int(split), len(console))
		w.Write(console[:at])
		w.Write(console[at:])
		w.flush()
		if w.exitSeen && (w.exitCode < 0 || w.exitCode > 255) {
			t.Errorf("exit code %d outside 0-255", w.exitCode)
		}
		if w.exitSeen && w.setupErr != "" {
			t.Errorf("both an exit code and a setup failure recorded")
		}
		if w.restartAt < 0 || w.restartAt > int64(len(console)) {
			t.Errorf("restart offset %d outside the %d-byte console", w.restartAt, len(console))
		}
		if len(w.marks) > bytes.Count(console, []byte("\n"))+1 {
			t.Errorf("%d marks from %d lines", len(w.marks), bytes.Count(console, []byte("\n"))+1)
		}
	})
}

func TestResultLinesAndMark(t *testing.T) {
	r := Result{
		Console: "a\r\ncheck: one 1\r\ncheck: two 2\nxcheck: no\ncheck: last",
		Marks:   []Mark{{Name: "init", At: time.Second}, {Name: "script-start", At: 2 * time.Second}},
	}
	if diff := cmp.Diff([]string{"check: one 1", "check: two 2", "check: last"}, r.Lines("check: ")); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
	if m, ok := r.Mark("script-start"); !ok || m.At != 2*time.Second {
		t.Errorf("Mark(script-start) = %+v, %t; want At 2s, true", m, ok)
	}
	if _, ok := r.Mark("missing"); ok {
		t.Errorf("Mark(missing) found; want not found")
	}
}

func TestExcerpt(t *testing.T) {
	short := strings.Repeat("a", excerptMax)
	if got := Excerpt(short); got != short {
		t.Errorf("Excerpt of %d bytes changed it", len(short))
	}
	long := "HEAD" + strings.Repeat("m", 3*excerptMax) + "TAIL"
	got := Excerpt(long)
	if !strings.HasPrefix(got, "HEAD") || !strings.HasSuffix(got, "TAIL") || !strings.Contains(got, "bytes elided") {
		t.Errorf("Excerpt of a long console lost its ends or the elision note")
	}
	if len(got) > excerptMax+100 {
		t.Errorf("len(Excerpt) = %d; want at most %d", len(got), excerptMax+100)
	}
}

func TestArgs(t *testing.T) {
	env := Env{Kernel: "/k/vmlinuz", TSCKHz: 2100000}
	args := Args(env, "/i/initrd", 1024)
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-M microvm,acpi=on", "-cpu qemu64,+svm,+npt", "-m 1024", "-smp 1",
		"-no-reboot", "-nic none", "-kernel /k/vmlinuz", "-initrd /i/initrd",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("Args lacks %q: %s", want, joined)
		}
	}
	app := args[len(args)-1]
	for _, want := range []string{"console=ttyS0", "rdinit=/init", "quiet", "panic=-1", "initcall_blacklist=cmos_init", "tsc_early_khz=2100000"} {
		if !strings.Contains(" "+app+" ", " "+want+" ") {
			t.Errorf("-append %q lacks %q", app, want)
		}
	}
	if c := strings.Join(Cmdline(Env{}), " "); strings.Contains(c, "tsc_early_khz") {
		t.Errorf("Cmdline with an unknown TSC rate = %q; want no tsc_early_khz", c)
	}
	if strings.Contains(joined, "-drive") {
		t.Errorf("Args without disks attaches a drive: %s", joined)
	}
}

func TestArgsDisks(t *testing.T) {
	args := Args(Env{Kernel: "/k/vmlinuz"}, "/i/initrd", 1024, Disk{HostPath: "/d/tree,1.ext4", ReadOnly: true}, Disk{HostPath: "/d/home.ext4"})
	var got []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-drive" || args[i] == "-device" {
			got = append(got, args[i]+" "+args[i+1])
		}
	}
	want := []string{
		"-drive if=none,id=disk0,format=raw,cache=unsafe,file=/d/tree,,1.ext4,readonly=on",
		"-device virtio-blk-device,drive=disk0",
		"-drive if=none,id=disk1,format=raw,cache=unsafe,file=/d/home.ext4",
		"-device virtio-blk-device,drive=disk1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Args disk options (-want +got):\n%s", diff)
	}
}

func TestReadL1Dir(t *testing.T) {
	dir := t.TempDir()
	if _, err := readL1Dir(dir); err == nil {
		t.Errorf("readL1Dir(empty dir) succeeded; want an error")
	}
	write(t, filepath.Join(dir, "vmlinuz"), "k")
	write(t, filepath.Join(dir, "modules.order"), "")
	if _, err := readL1Dir(dir); err == nil {
		t.Errorf("readL1Dir with no modules succeeded; want an error")
	}
	write(t, filepath.Join(dir, "modules.order"), "irqbypass.ko\nkvm.ko\n")
	write(t, filepath.Join(dir, "modules", "irqbypass.ko"), "m")
	if _, err := readL1Dir(dir); err == nil {
		t.Errorf("readL1Dir with a listed module missing succeeded; want an error")
	}
	write(t, filepath.Join(dir, "modules", "kvm.ko"), "m")
	l1, err := readL1Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &l1Files{kernel: filepath.Join(dir, "vmlinuz"), modules: []string{filepath.Join(dir, "modules", "irqbypass.ko"), filepath.Join(dir, "modules", "kvm.ko")}}
	if diff := cmp.Diff(want, l1, cmp.AllowUnexported(l1Files{})); diff != "" {
		t.Errorf("readL1Dir (-want +got):\n%s", diff)
	}
	// modules.disk is optional, but what it lists must exist.
	write(t, filepath.Join(dir, "modules.disk"), "virtio.ko\nvirtio_blk.ko\n")
	write(t, filepath.Join(dir, "modules", "virtio.ko"), "m")
	if _, err := readL1Dir(dir); err == nil {
		t.Errorf("readL1Dir with a disk module missing succeeded; want an error")
	}
	write(t, filepath.Join(dir, "modules", "virtio_blk.ko"), "m")
	if l1, err = readL1Dir(dir); err != nil {
		t.Fatal(err)
	}
	want.diskModules = []string{filepath.Join(dir, "modules", "virtio.ko"), filepath.Join(dir, "modules", "virtio_blk.ko")}
	if diff := cmp.Diff(want, l1, cmp.AllowUnexported(l1Files{})); diff != "" {
		t.Errorf("readL1Dir with modules.disk (-want +got):\n%s", diff)
	}
}

func TestIsStatic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "not-elf")
	write(t, p, "#!/bin/sh\n")
	if _, err := isStatic(p); err == nil {
		t.Errorf("isStatic(shell script) succeeded; want an error")
	}
	// Debian's coreutils are dynamically linked.
	if static, err := isStatic("/bin/ls"); err != nil || static {
		t.Errorf("isStatic(/bin/ls) = %t, %v; want false, nil", static, err)
	}
}

func TestInitScript(t *testing.T) {
	s := initScript([]string{"/c/modules/irqbypass.ko", "/c/modules/kvm.ko", "/c/modules/kvm-amd.ko"}, []string{"/c/modules/virtio_blk.ko"}, 0)
	// Modules load in the given order, kvm-amd with the svm diagnosis.
	var at []int
	for _, m := range []string{"insmod /nested/modules/irqbypass.ko ", "insmod /nested/modules/kvm.ko ", "insmod /nested/modules/kvm-amd.ko "} {
		i := strings.Index(s, m)
		if i < 0 {
			t.Fatalf("init script lacks %q:\n%s", m, s)
		}
		at = append(at, i)
	}
	if at[0] > at[1] || at[1] > at[2] {
		t.Errorf("modules load out of order (offsets %v):\n%s", at, s)
	}
	for _, want := range []string{"no svm flag", "mount -t devtmpfs", "[ -c /dev/kvm ]", "mark script-start", "/bin/sh " + l1Script, `echo "nested: exit=$code"`, "poweroff -f"} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q", want)
		}
	}
	// The markers the script prints must be the ones the watcher parses.
	for _, p := range []string{markPrefix, exitPrefix, setupPrefix} {
		if !strings.Contains(s, p) {
			t.Errorf("init script never prints %q", p)
		}
	}
	// Without disks the virtio-blk modules are not loaded.
	if strings.Contains(s, "virtio_blk") || strings.Contains(s, "disks-ready") {
		t.Errorf("init script without disks loads virtio-blk:\n%s", s)
	}
}

func TestInitScriptDisks(t *testing.T) {
	s := initScript([]string{"/c/modules/kvm.ko"}, []string{"/c/modules/virtio.ko", "/c/modules/virtio_blk.ko"}, 2)
	// kvm, then the disk modules in order, then the wait for the last
	// disk, all before the script starts.
	var at []int
	for _, want := range []string{"insmod /nested/modules/kvm.ko ", "insmod /nested/modules/virtio.ko ",
		"insmod /nested/modules/virtio_blk.ko ", "[ ! -b /dev/vdb ]", "mark disks-ready", "mark script-start"} {
		i := strings.Index(s, want)
		if i < 0 {
			t.Fatalf("init script lacks %q:\n%s", want, s)
		}
		at = append(at, i)
	}
	if !slices.IsSorted(at) {
		t.Errorf("init script steps out of order (offsets %v):\n%s", at, s)
	}
}

func TestBuildInitramfs(t *testing.T) {
	dir := t.TempDir()
	env := Env{Busybox: filepath.Join(dir, "busybox"), Modules: []string{filepath.Join(dir, "kvm.ko")}}
	write(t, env.Busybox, "BUSYBOX")
	write(t, env.Modules[0], "KVM")
	host := filepath.Join(dir, "tool")
	write(t, host, "TOOL")
	if err := os.Chmod(host, 0o750); err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Script: "echo hi\n",
		Files: []File{
			{Path: "/opt/deep/dir/data", Data: []byte("DATA")},
			{Path: "/bin/tool", HostPath: host},
			{Path: "/bin/forced", HostPath: host, Mode: 0o700},
			{Path: "/opt/deep/empty", Data: []byte{}},
		},
	}
	var buf bytes.Buffer
	if err := buildInitramfs(&buf, env, opts); err != nil {
		t.Fatal(err)
	}
	got := map[string]cpioEntry{}
	var order []string
	for _, e := range readNewc(t, buf.Bytes()) {
		got[e.name] = e
		order = append(order, e.name)
	}
	want := map[string]struct {
		mode uint32
		data string
	}{
		"init":                  {0o100755, ""},
		"dev/console":           {0o020600, ""},
		"bin/busybox":           {0o100755, "BUSYBOX"},
		"bin/sh":                {0o120777, "busybox"},
		"bin/nested-mark":       {0o100755, markTool},
		"nested/script.sh":      {0o100755, "echo hi\n"},
		"nested/modules/kvm.ko": {0o100644, "KVM"},
		"opt":                   {0o040755, ""},
		"opt/deep":              {0o040755, ""},
		"opt/deep/dir":          {0o040755, ""},
		"opt/deep/dir/data":     {0o100644, "DATA"},
		"opt/deep/empty":        {0o100644, ""},
		"bin/tool":              {0o100750, "TOOL"},
		"bin/forced":            {0o100700, "TOOL"},
		"nested/modules":        {0o040755, ""},
		"root":                  {0o040755, ""},
	}
	for name, w := range want {
		e, ok := got[name]
		if !ok {
			t.Errorf("initramfs lacks %s (has %v)", name, order)
			continue
		}
		if e.mode != w.mode {
			t.Errorf("%s mode = %o; want %o", name, e.mode, w.mode)
		}
		if w.data != "" && e.data != w.data {
			t.Errorf("%s data = %q; want %q", name, e.data, w.data)
		}
	}
	if !strings.Contains(got["init"].data, "insmod /nested/modules/kvm.ko") {
		t.Errorf("/init does not load kvm.ko:\n%s", got["init"].data)
	}
	// Every parent precedes its children: the kernel does not create them.
	seen := map[string]bool{}
	for _, name := range order {
		if d := filepath.Dir(name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", name, d)
		}
		seen[name] = true
	}

	// Disk modules go into the initramfs only for a run with disks.
	env.DiskModules = []string{filepath.Join(dir, "virtio_blk.ko")}
	write(t, env.DiskModules[0], "VIRTIO_BLK")
	const vblk = "nested/modules/virtio_blk.ko"
	for _, disks := range []int{0, 1} {
		var buf bytes.Buffer
		if err := buildInitramfs(&buf, env, Options{Disks: make([]Disk, disks)}); err != nil {
			t.Fatal(err)
		}
		has := false
		for _, e := range readNewc(t, buf.Bytes()) {
			if e.name == vblk {
				has = e.data == "VIRTIO_BLK"
			}
		}
		if has != (disks > 0) {
			t.Errorf("initramfs with %d disks has %s: %t; want %t", disks, vblk, has, disks > 0)
		}
	}

	for _, bad := range []File{
		{Path: "relative", Data: []byte("x")},
		{Path: "/missing", HostPath: filepath.Join(dir, "nope")},
		{Path: "/bin/busybox", Data: []byte("dup")},
	} {
		if err := buildInitramfs(&bytes.Buffer{}, env, Options{Files: []File{bad}}); err == nil {
			t.Errorf("buildInitramfs with file %+v succeeded; want an error", bad)
		}
	}
}

type cpioEntry struct {
	name string
	mode uint32
	data string
}

// readNewc parses the newc archive the writer produced (the test's own
// output, so it fails the test rather than returning errors).
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad newc header at %d", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("bad newc field %d at %d: %v", i, off, err)
			}
			return int(v)
		}
		mode, size, nameSize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+nameSize-1])
		dataOff := align(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{name: name, mode: uint32(mode), data: string(b[dataOff : dataOff+size])})
		off = align(dataOff + size)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
