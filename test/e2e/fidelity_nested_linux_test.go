package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msb-go/msb/internal/e2etest"
	"github.com/msb-go/msb/internal/e2etest/nested"
	"github.com/msb-go/msb/internal/guestkernel"
)

// nestedFidelityShort is the fidelity tier's CI subset on the native VMM:
// the modules of fidelityShort closest to the inode and dnotify cases
// (os: scandir, DirEntry.inode, stat results, utime; stat; fcntl: locks,
// F_NOTIFY; glob's directory walks) plus terminals and polling. test_posix (35 s),
// test_tempfile (16 s) and test_shutil (12 s) of L1 time are left out to
// stay within CI's budget under nested virtualization; see docs/testing.md.
var nestedFidelityShort = []string{"test_os", "test_fcntl", "test_stat", "test_glob", "test_pty", "test_select"}

// nestedFidelityFull is what `make test-fidelity` (MSB_FIDELITY_FULL=1)
// runs on the native VMM: the QEMU tier's CI list, about 2.5 minutes.
var nestedFidelityFull = fidelityShort

// Console line prefixes of the nested fidelity script.
const (
	nfGuestPrefix   = "guest| "
	nfCasePrefix    = "case: "
	nfTimingsPrefix = "create-timings: "
)

// TestNestedFidelity is the fidelity tier on the native VMM: in one boot of
// the nested harness's L1, `msb create --vmm kvm` makes a sandbox of the
// Debian test tree, which reaches L1 as a read-only ext4 disk, CPython's
// regression tests run in it through `msb exec`, and every test case whose
// outcome differs from a host chroot run of the same modules fails the
// test; then the fidelityCases run in the same sandbox.
func TestNestedFidelity(t *testing.T) {
	env := nested.Require(t)
	if len(env.DiskModules) == 0 {
		msg := "the L1 kernel directory ($MSB_NESTED_L1) has no modules.disk: prepare it with scripts/nested/l1-kernel.sh"
		if e2etest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Getuid() != 0 {
		t.Skip("the host chroot needs root")
	}
	requireTool(t, "unshare", "util-linux")
	mkfs := requireTool(t, "mkfs.ext4", "e2fsprogs")
	tree := debianImage(t, "testsuite")
	kernel, err := guestkernel.Locate()
	if err != nil {
		t.Fatalf("guest kernel: %v", err)
	}
	modules, timeout := nestedFidelityShort, 8*time.Minute
	if os.Getenv("MSB_FIDELITY_FULL") == "1" {
		modules, timeout = nestedFidelityFull, 60*time.Minute
	}

	dir := t.TempDir()
	start := time.Now()
	treeImg := filepath.Join(dir, "tree.ext4")
	// No journal: L1 mounts it read-only and nothing replays. mkfs.ext4 -d
	// keeps owners, modes, hard links and xattrs, and mtimes to the second
	// (CPython's .pyc checks need no more); L1's msb packs the tree from
	// there like any --rootfs directory, as TestFidelity's host msb does.
	mkext4(t, mkfs, treeImg, "2G", "-O", "^has_journal", "-d", tree)
	// MSB_HOME in L1 (the packed root, the sandbox's writable layer) goes
	// on a disk rather than L1's RAM.
	homeImg := filepath.Join(dir, "home.ext4")
	mkext4(t, mkfs, homeImg, "8G")
	t.Logf("disk images: %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start = time.Now()
	host := hostChroot(ctx, t, tree, regrtest(modules))
	t.Logf("host chroot, %d modules: %v", len(modules), time.Since(start).Round(time.Second))

	files := []nested.File{
		{Path: "/opt/msb/msb", HostPath: e2etest.Build(t, "./cmd/msb"), Mode: 0o755},
		{Path: "/opt/msb/agentd", HostPath: e2etest.Build(t, "./cmd/agentd"), Mode: 0o755},
		{Path: "/opt/msb/vmlinux", HostPath: kernel, Mode: 0o644},
	}
	var cases strings.Builder
	for _, fc := range fidelityCases {
		p := "/opt/fid/" + fc.name + ".py"
		files = append(files, nested.File{Path: p, Data: []byte(fc.script)})
		fmt.Fprintf(&cases, "echo \"%s%s $(msb exec fid -- python3 - < %s | tr '\\n' '|')\"\n", nfCasePrefix, fc.name, p)
	}
	script := `set -u
export MSB_HOME=/msbhome HOME=/root PATH=/opt/msb:$PATH
mkdir -p /tree /msbhome
mount -o ro /dev/vda /tree || exit 10
mount /dev/vdb /msbhome || exit 11
nested-mark create
msb create --timings --vmm kvm --rootfs /tree --name fid --no-net -m 1024 >/dev/null 2>/tmp/create.err ||
	{ cat /tmp/create.err; exit 12; }
nested-mark created
sed 's/^/` + nfTimingsPrefix + `/' /tmp/create.err
msb exec fid -- sh -c '` + regrtest(modules) + `' | sed 's/^/` + nfGuestPrefix + `/'
nested-mark regrtest-done
` + cases.String() + `nested-mark cases-done
grep -E 'backend=|error' $MSB_HOME/sandboxes/fid/logs/runtime.log | sed 's/^/runtime.log: /'
msb rm -f fid >/dev/null
`
	res := nested.Run(t, env, nested.Options{
		Files:   files,
		Script:  script,
		Timeout: timeout,
		Disks:   []nested.Disk{{HostPath: treeImg, ReadOnly: true}, {HostPath: homeImg}},
		// The L2 guest's 1 GiB plus L1's page cache of the tree.
		MemoryMiB: 3072,
	})
	logTimings(t, res)
	// msb create's own timeline splits packing the tree in L1 from the
	// L2 boot.
	t.Logf("msb create --timings in L1:\n%s", strings.Join(res.Lines(nfTimingsPrefix), "\n"))
	if res.ExitCode != 0 {
		t.Fatalf("L1 script exit %d (10/11: mount, 12: msb create)\nL1 console:\n%s", res.ExitCode, nested.Excerpt(res.Console))
	}
	if !strings.Contains(res.Console, "backend=kvm") {
		t.Errorf("the sandbox did not run on the native VMM:\n%s", nested.Excerpt(res.Console))
	}

	var guest strings.Builder
	for _, l := range res.Lines(nfGuestPrefix) {
		guest.WriteString(strings.TrimPrefix(l, nfGuestPrefix) + "\n")
	}
	h, g := outcomes(host), outcomes(guest.String())
	if dir := os.Getenv("MSB_FIDELITY_OUT"); dir != "" {
		os.WriteFile(filepath.Join(dir, "host-nested.txt"), []byte(host), 0o644)
		os.WriteFile(filepath.Join(dir, "guest-nested.txt"), []byte(guest.String()), 0o644)
		os.WriteFile(filepath.Join(dir, "console-nested.txt"), []byte(res.Console), 0o644)
	}
	if len(h) < 50*len(modules)/10 {
		t.Fatalf("host ran only %d test cases of %d modules; output:\n%s", len(h), len(modules), tail(host, 4000))
	}
	if diff := fidelityDiff(h, g); len(diff) > 0 {
		t.Errorf("%d of %d test cases differ between host and guest (native VMM):\n%s\nguest output tail:\n%s",
			len(diff), len(h), strings.Join(diff, "\n"), tail(guest.String(), 3000))
	} else {
		t.Logf("%d test cases of %v, same outcome on host and guest (native VMM)", len(h), modules)
	}

	for _, fc := range fidelityCases {
		l := res.Lines(nfCasePrefix + fc.name + " ")
		if len(l) != 1 {
			t.Errorf("%s: console has %d result lines; want 1", fc.name, len(l))
			continue
		}
		got := strings.Trim(strings.TrimPrefix(l[0], nfCasePrefix+fc.name+" "), "|")
		if got != fc.want {
			t.Errorf("%s on the native VMM: %s: %q; want %q", fc.name, fc.what, strings.ReplaceAll(got, "|", "\n"), fc.want)
		}
	}
}

// mkext4 creates a sparse file of size and an ext4 file system on it.
func mkext4(t *testing.T, mkfs, img, size string, args ...string) {
	t.Helper()
	if out, err := exec.Command("truncate", "-s", size, img).CombinedOutput(); err != nil {
		t.Fatalf("truncate %s: %v: %s", img, err, out)
	}
	args = append([]string{"-q", "-F"}, append(args, img)...)
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v: %s", img, err, out)
	}
}
