package nested

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/msb-go/msb/internal/guestkernel"
)

// Paths inside the L1 initramfs.
const (
	l1ModuleDir = "/nested/modules"
	l1Script    = "/nested/script.sh"
	l1MarkTool  = "/bin/nested-mark"
)

// initScript returns L1's /init: a busybox sh script that mounts the kernel
// filesystems, loads the kvm modules in order, runs the test script with
// its output on the console and reports its exit status as a marker line,
// then powers off, which ends QEMU. (Not reboot: with `reboot -f` about one
// run in six booted L1 a second time instead of ending QEMU despite
// -no-reboot, most likely because the kernel's reboot fallbacks reached a
// firmware restart; power-off has no such fallback.) Setup failures
// print a "setup failed" marker instead, so the host fails fast with the
// reason rather than waiting for the timeout. With disks > 0 it then loads
// diskModules and waits for /dev/vda… to appear.
func initScript(modules, diskModules []string, disks int) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
# L1 init of the nested-KVM harness (internal/e2etest/nested).
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
mount -t tmpfs tmpfs /tmp
mark() { echo "nested: mark $1 uptime=$(cut -d' ' -f1 /proc/uptime)"; }
fail() {
	echo "nested: setup failed: $*"
	echo "nested: last kernel messages:"
	dmesg | tail -n 15
	sync
	poweroff -f
	sleep 10
}
mark init
`)
	for _, m := range modules {
		name := path.Base(m)
		fmt.Fprintf(&b, "insmod %s/%s || ", l1ModuleDir, name)
		if strings.HasPrefix(name, "kvm-amd") || strings.HasPrefix(name, "kvm_amd") {
			// The usual cause is a CPU model without SVM; say which.
			b.WriteString(`{ if grep -qw svm /proc/cpuinfo; then fail "insmod ` + name + ` (the L1 CPU has svm; see the kernel messages)"; else fail "insmod ` + name + `: the L1 CPU has no svm flag (QEMU needs -cpu ...,+svm)"; fi; }` + "\n")
		} else {
			fmt.Fprintf(&b, "fail \"insmod %s\"\n", name)
		}
	}
	b.WriteString(`[ -c /dev/kvm ] || fail "/dev/kvm is missing after loading the kvm modules"
mark modules-loaded
`)
	if disks > 0 {
		for _, m := range diskModules {
			name := path.Base(m)
			fmt.Fprintf(&b, "insmod %s/%s || fail \"insmod %s\"\n", l1ModuleDir, name, name)
		}
		// virtio-blk registers its disks while insmod runs, but devtmpfs
		// creates the nodes asynchronously; allow it a moment.
		last := "vd" + string(rune('a'+disks-1))
		fmt.Fprintf(&b, `i=0
while [ ! -b /dev/%[1]s ]; do
	i=$((i+1)); [ $i -gt 100 ] && fail "/dev/%[1]s is missing after loading the virtio-blk modules"
	sleep 0.1
done
mark disks-ready
`, last)
	}
	b.WriteString(`cd /root
mark script-start
/bin/sh ` + l1Script + ` </dev/null
code=$?
echo "nested: exit=$code"
sync
poweroff -f
sleep 10
`)
	return b.String()
}

// markTool is /bin/nested-mark, which scripts call to record a timing mark.
const markTool = `#!/bin/sh
echo "nested: mark $1 uptime=$(cut -d' ' -f1 /proc/uptime)"
`

// writeInitramfs writes the L1 initramfs for env and opts to dst.
func writeInitramfs(dst string, env Env, opts Options) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := buildInitramfs(bw, env, opts); err != nil {
		return err
	}
	return bw.Flush()
}

// initramfs adds entries to a cpio archive, creating parent directories on
// first use.
type initramfs struct {
	w    *guestkernel.CPIOWriter
	dirs map[string]bool
}

func (r *initramfs) mkdirAll(dir string) error {
	dir = strings.Trim(path.Clean("/"+dir), "/")
	if dir == "" || r.dirs[dir] {
		return nil
	}
	if err := r.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	r.dirs[dir] = true
	return r.w.Add(guestkernel.Entry{Name: dir, Mode: fs.ModeDir | 0o755})
}

func (r *initramfs) add(e guestkernel.Entry) error {
	e.Name = strings.TrimPrefix(path.Clean("/"+e.Name), "/")
	if err := r.mkdirAll(path.Dir(e.Name)); err != nil {
		return err
	}
	if e.Mode.IsDir() {
		if r.dirs[e.Name] {
			return nil
		}
		r.dirs[e.Name] = true
	}
	return r.w.Add(e)
}

func buildInitramfs(w io.Writer, env Env, opts Options) error {
	bb, err := os.ReadFile(env.Busybox)
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	r := &initramfs{w: guestkernel.NewCPIOWriter(w), dirs: map[string]bool{}}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "nested"} {
		if err := r.add(guestkernel.Entry{Name: d, Mode: fs.ModeDir | 0o755}); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's stdio before devtmpfs is
	// mounted, so the node must be in the archive.
	if err := r.add(guestkernel.Entry{Name: "dev/console", Mode: fs.ModeCharDevice | fs.ModeDevice | 0o600, Major: 5, Minor: 1}); err != nil {
		return err
	}
	entries := []guestkernel.Entry{
		{Name: "bin/busybox", Mode: 0o755, Data: bb},
		{Name: "bin/sh", Mode: fs.ModeSymlink | 0o777, Target: "busybox"},
		{Name: "init", Mode: 0o755, Data: []byte(initScript(env.Modules, env.DiskModules, len(opts.Disks)))},
		{Name: l1MarkTool, Mode: 0o755, Data: []byte(markTool)},
		{Name: l1Script, Mode: 0o755, Data: []byte(opts.Script)},
	}
	for _, e := range entries {
		if err := r.add(e); err != nil {
			return err
		}
	}
	modules := env.Modules
	if len(opts.Disks) > 0 {
		modules = append(slices.Clone(modules), env.DiskModules...)
	}
	for _, m := range modules {
		b, err := os.ReadFile(m)
		if err != nil {
			return fmt.Errorf("module: %w", err)
		}
		if err := r.add(guestkernel.Entry{Name: path.Join(l1ModuleDir, filepath.Base(m)), Mode: 0o644, Data: b}); err != nil {
			return err
		}
	}
	for _, f := range opts.Files {
		data, mode := f.Data, f.Mode.Perm()
		if data == nil {
			st, err := os.Stat(f.HostPath)
			if err != nil {
				return fmt.Errorf("file %s: %w", f.Path, err)
			}
			if data, err = os.ReadFile(f.HostPath); err != nil {
				return fmt.Errorf("file %s: %w", f.Path, err)
			}
			if mode == 0 {
				mode = st.Mode().Perm()
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		if !strings.HasPrefix(f.Path, "/") {
			return fmt.Errorf("file %q: path must be absolute", f.Path)
		}
		if err := r.add(guestkernel.Entry{Name: f.Path, Mode: mode, Data: data}); err != nil {
			return fmt.Errorf("file %s: %w", f.Path, err)
		}
	}
	return r.w.Close()
}
