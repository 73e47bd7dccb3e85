package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/agentproto"
)

// Runtime directory layout inside the guest.
const (
	runtimeDir     = "/.msb"
	runtimeTag     = "msb_runtime" // virtio-fs tag of the host's runtime dir
	newRoot        = "/newroot"
	lowerMount     = runtimeDir + "/rootfs/lower"
	upperMount     = runtimeDir + "/rootfs/upperfs"
	fileMountsDir  = runtimeDir + "/file-mounts"
	heartbeatFile  = runtimeDir + "/heartbeat.json"
	hostClockFile  = runtimeDir + "/host-clock" // written by the host
	blockWait      = 2 * time.Second
	blockWaitPoll  = 10 * time.Millisecond
	defaultDirMode = 0o755
)

// mount wraps mount(2), creating the target directory first; EBUSY
// (already mounted) is not an error.
func mount(src, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, defaultDirMode); err != nil {
		return fmt.Errorf("mount %s: %w", target, err)
	}
	if err := unix.Mount(src, target, fstype, flags, data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s (%s): %w", src, target, fstype, err)
	}
	return nil
}

// mountPseudo mounts the kernel filesystems every Linux userland expects
// (reference §8.2 step 2).
func mountPseudo() error {
	const common = unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_RELATIME
	steps := []struct {
		src, target, fstype string
		flags               uintptr
		data                string
	}{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID | unix.MS_RELATIME, "mode=0755"},
		{"proc", "/proc", "proc", common, ""},
		{"sysfs", "/sys", "sysfs", common, ""},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", common, ""},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_RELATIME, "ptmxmode=0666,mode=0620,gid=5"},
		{"tmpfs", "/dev/shm", "tmpfs", common, "mode=1777"},
	}
	for _, s := range steps {
		if err := mount(s.src, s.target, s.fstype, s.flags, s.data); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, name); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	return nil
}

// mountRuntimeDir keeps what is mounted at /.msb already; otherwise it
// mounts the host's runtime directory (virtio-fs tag msb_runtime) there, or
// a tmpfs when the host shares none, so that /.msb always exists and is
// writable.
func mountRuntimeDir() error {
	if isMountPoint(runtimeDir) {
		return nil
	}
	if err := mount(runtimeTag, runtimeDir, "virtiofs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_RELATIME, ""); err == nil {
		return nil
	}
	return mount("tmpfs", runtimeDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_RELATIME, "mode=0755")
}

// isMountPoint reports whether dir is on another filesystem than its
// parent.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// waitBlockDevice waits until /sys/block knows the device (devtmpfs then has
// its node); virtio-blk probing may finish after init started.
func waitBlockDevice(dev string) error {
	name := filepath.Base(dev)
	deadline := time.Now().Add(blockWait)
	for {
		if _, err := os.Stat(filepath.Join("/sys/block", name)); err == nil {
			if _, err := os.Stat(dev); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("block device %s: not present after %v", dev, blockWait)
		}
		time.Sleep(blockWaitPoll)
	}
}

// blockFilesystems lists the filesystem types that need a device, from
// /proc/filesystems, for probing. The common ones go first: the kernel
// logs every failed attempt (ext4 registers ext3 and ext2 before itself).
func blockFilesystems() []string {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 {
			out = append(out, f[0])
		}
	}
	preferred := []string{"ext4", "xfs", "btrfs", "erofs", "squashfs", "vfat"}
	slices.SortStableFunc(out, func(a, b string) int {
		ia, ib := slices.Index(preferred, a), slices.Index(preferred, b)
		if ia < 0 {
			ia = len(preferred)
		}
		if ib < 0 {
			ib = len(preferred)
		}
		return ia - ib
	})
	return out
}

// mountBlock mounts dev with fstype, or tries every block filesystem when
// fstype is empty.
func mountBlock(dev, target, fstype string, flags uintptr) error {
	if fstype != "" {
		return mount(dev, target, fstype, flags, "")
	}
	var errs []error
	for _, t := range blockFilesystems() {
		err := mount(dev, target, t, flags, "")
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("mount %s: no filesystem type worked: %w", dev, errors.Join(errs...))
}

// assembleRoot builds the root at /newroot from block devices and switches
// to it (reference §8.2 step 4).
func assembleRoot(br *BlockRoot) error {
	switch br.Kind {
	case BlockRootDiskImage:
		if err := waitBlockDevice(br.Device); err != nil {
			return err
		}
		if err := mountBlock(br.Device, newRoot, br.FSType, 0); err != nil {
			return fmt.Errorf("root: %w", err)
		}
	case BlockRootOCIErofs:
		for _, d := range []string{br.Lower, br.Upper} {
			if err := waitBlockDevice(d); err != nil {
				return err
			}
		}
		if err := mount(br.Lower, lowerMount, "erofs", unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("root lower: %w", err)
		}
		if err := mount(br.Upper, upperMount, br.UpperFSType, 0, ""); err != nil {
			return fmt.Errorf("root upper: %w", err)
		}
		if err := overlayRoot(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("root: unknown kind %q", br.Kind)
	}
	return switchRoot()
}

// overlayFeatures make the overlay root behave like one file system to the
// programs on it (found by the guest-fidelity tier, test/e2e/fidelity):
//   - xino=on: the lower (EROFS) and the upper (ext4 or tmpfs) are two file
//     systems, so without it readdir's d_ino differs from stat's st_ino for
//     the same entry (CPython's test_os.TestScandir; scandir-based walkers,
//     backup and sync tools, hardlink detection). xino composes one inode
//     number space from the layers' numbers and a layer index in the high
//     bits, which ext4's and EROFS's 32-bit numbers leave free.
//   - redirect_dir=on: renaming a directory that comes from the image fails
//     with EXDEV without it (rename(2) works on any single file system);
//     with it the upper records a redirect instead.
const overlayFeatures = "xino=on,redirect_dir=on"

// overlayRoot mounts at /newroot the overlay of the upper file system at
// upperMount over the read-only tree at lowerMount.
func overlayRoot() error {
	for _, d := range []string{"upper", "work"} {
		if err := os.MkdirAll(filepath.Join(upperMount, d), defaultDirMode); err != nil {
			return fmt.Errorf("root upper: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work,%s", lowerMount, upperMount, upperMount,
		overlayFeatures)
	if err := mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("root overlay: %w", err)
	}
	return nil
}

// assembleFSRoot makes a virtio-fs share the root and switches to it, the
// same way as a block root. A writable share is the root itself: writes go
// to the host directory through the host's passthrough file system, which
// keeps the guest's ownership in an xattr. A read-only one becomes the lower
// of an overlay with a tmpfs upper, so init can still write /etc/hosts and
// mount points while the host directory stays untouched.
func assembleFSRoot(r *FSRoot) error {
	if !r.ReadOnly {
		if err := mount(r.Tag, newRoot, "virtiofs", unix.MS_RELATIME, ""); err != nil {
			return fmt.Errorf("root: %w", err)
		}
		return switchRoot()
	}
	if err := mount(r.Tag, lowerMount, "virtiofs", unix.MS_RDONLY|unix.MS_RELATIME, ""); err != nil {
		return fmt.Errorf("root lower: %w", err)
	}
	if err := mount("tmpfs", upperMount, "tmpfs", unix.MS_RELATIME, "mode=0755"); err != nil {
		return fmt.Errorf("root upper: %w", err)
	}
	if err := overlayRoot(); err != nil {
		return err
	}
	return switchRoot()
}

// switchRoot moves /.msb (with the lower and upper mounts under it) into
// /newroot, makes /newroot the root and mounts fresh pseudo filesystems in
// it. The initramfs stays underneath, unreachable.
func switchRoot() error {
	target := newRoot + runtimeDir
	if err := os.MkdirAll(target, defaultDirMode); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(runtimeDir, target, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move %s: %w", runtimeDir, err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	return mountPseudo()
}

// mountVolumes mounts the dir, file and disk volumes (reference §8.2 step 5).
func mountVolumes(c Config) error {
	const volFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RELATIME
	ro := func(b bool) uintptr {
		if b {
			return unix.MS_RDONLY
		}
		return 0
	}
	for _, m := range c.DirMounts {
		if err := mount(m.Tag, m.Path, "virtiofs", volFlags|ro(m.ReadOnly), ""); err != nil {
			return err
		}
	}
	for _, m := range c.FileMounts {
		if err := mountFile(m); err != nil {
			return err
		}
	}
	for _, m := range c.DiskMounts {
		dev, err := findDiskBySerial(m.ID)
		if err != nil {
			return err
		}
		if err := mountBlock(dev, m.Path, m.FSType, volFlags|ro(m.ReadOnly)); err != nil {
			return fmt.Errorf("disk %s: %w", m.ID, err)
		}
	}
	return nil
}

// mountFile shares one file: the share is mounted under /.msb/file-mounts,
// the file bind-mounted onto the target (created empty first), and the
// share detached again.
func mountFile(m FileMount) error {
	share := filepath.Join(fileMountsDir, m.Tag)
	if err := mount(m.Tag, share, "virtiofs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_RELATIME, ""); err != nil {
		return err
	}
	defer unix.Unmount(share, unix.MNT_DETACH)
	if err := os.MkdirAll(filepath.Dir(m.Path), defaultDirMode); err != nil {
		return fmt.Errorf("file mount %s: %w", m.Path, err)
	}
	f, err := os.OpenFile(m.Path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("file mount %s: %w", m.Path, err)
	}
	f.Close()
	src := filepath.Join(share, m.File)
	if err := unix.Mount(src, m.Path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("file mount %s: bind: %w", m.Path, err)
	}
	if m.ReadOnly {
		// A bind mount ignores MS_RDONLY; read-only needs a remount.
		if err := unix.Mount("", m.Path, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("file mount %s: read-only: %w", m.Path, err)
		}
	}
	return nil
}

// findDiskBySerial finds the virtio-blk device whose serial is id, waiting
// for late devices up to blockWait.
func findDiskBySerial(id string) (string, error) {
	deadline := time.Now().Add(blockWait)
	for {
		paths, _ := filepath.Glob("/sys/block/vd*/serial")
		slices.Sort(paths)
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(data)) == id {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("disk %s: no virtio-blk device with this serial after %v", id, blockWait)
		}
		time.Sleep(blockWaitPoll)
	}
}

// setupTmpfs mounts the MSB_TMPFS entries and makes sure /tmp and /var/tmp
// exist with mode 1777 (reference §8.2 step 7).
func setupTmpfs(c Config) error {
	for _, t := range c.Tmpfs {
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RELATIME)
		if t.NoExec {
			flags |= unix.MS_NOEXEC
		}
		if t.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		data := fmt.Sprintf("mode=%o", t.Mode)
		if t.SizeMiB > 0 {
			data = fmt.Sprintf("size=%d,%s", t.SizeMiB<<20, data)
		}
		if err := mount("tmpfs", t.Path, "tmpfs", flags, data); err != nil {
			return fmt.Errorf("tmpfs: %w", err)
		}
	}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if err := os.MkdirAll(d, 0o1777); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil && !errors.Is(err, unix.EROFS) {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	return nil
}

// setupIdentity sets the hostname and rewrites /etc/hostname, /etc/hosts
// and /etc/resolv.conf (reference §8.2 steps 6 and 8).
func setupIdentity(c Config) error {
	if err := os.MkdirAll("/etc", defaultDirMode); err != nil {
		return err
	}
	if c.Hostname != "" {
		if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
		if err := writeFileReplacing("/etc/hostname", c.Hostname+"\n"); err != nil {
			return err
		}
	}
	var gw4, gw6, dns4, dns6 netip.Addr
	if c.IPv4 != nil {
		gw4, dns4 = c.IPv4.Gateway, c.IPv4.DNS
	}
	if c.IPv6 != nil {
		gw6, dns6 = c.IPv6.Gateway, c.IPv6.DNS
	}
	if err := writeFileReplacing("/etc/hosts", hostsFile(c.Hostname, c.HostAlias, gw4, gw6)); err != nil {
		return err
	}
	if err := updateProfile("/etc/profile"); err != nil {
		return err
	}
	if rc := resolvConf(dns4, dns6); rc != "" {
		if err := writeFileReplacing("/etc/resolv.conf", rc); err != nil {
			return err
		}
	}
	return nil
}

// updateProfile adds the scripts block to /etc/profile (reference §8.2
// step 10).
func updateProfile(name string) error {
	old, err := os.ReadFile(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", name, err)
	}
	updated := profileWithScripts(string(old))
	if updated == string(old) {
		return nil
	}
	return writeFileReplacing(name, updated)
}

// writeFileReplacing writes name, replacing a symlink (images often link
// /etc/resolv.conf to a systemd path that does not exist here).
func writeFileReplacing(name, content string) error {
	if fi, err := os.Lstat(name); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(name)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// runInit performs PID 1's setup in the order of reference §8.2. It adds
// the trust store's variables to c.Env; failing to install the certificates
// is logged, not fatal (see installTrust).
func runInit(c *Config, log *slog.Logger, st *stageLog) error {
	if err := applyRlimits(0, configRlimits(c.Rlimits)); err != nil {
		return fmt.Errorf("rlimits: %w", err)
	}
	if err := mountPseudo(); err != nil {
		return err
	}
	go relaxSysmon()
	st.mark("pseudo filesystems mounted")
	if c.Probe {
		return nil
	}
	// The network needs only netlink: it is configured while the root is
	// assembled, whose disk and virtio-fs round trips leave the vCPU idle
	// (under TCG they are most of that step), and joined before anything
	// can use it.
	type netResult struct {
		err error
		at  uint64
	}
	netDone := make(chan netResult, 1)
	netCfg := *c
	go func() {
		err := setupNetwork(netCfg)
		netDone <- netResult{err, uint64(bootTime())}
	}()
	if c.ClockNs != 0 {
		if err := setClock(c.ClockNs); err != nil {
			return fmt.Errorf("clock: %w", err)
		}
	}
	if err := mountRuntimeDir(); err != nil {
		return err
	}
	st.mark("runtime share mounted")
	if err := installScripts(initramfsScripts, scriptsDir); err != nil {
		return fmt.Errorf("scripts: %w", err)
	}
	// Staged before the root switch, which leaves the initramfs unreachable.
	if err := stageTLS(initramfsTLS, stagedTLS); err != nil {
		log.Warn("tls: staging the certificates failed; the guest will not trust them", "err", err)
	}
	st.mark("scripts and certificates staged")
	switch {
	case c.BlockRoot != nil:
		if err := assembleRoot(c.BlockRoot); err != nil {
			return err
		}
	case c.FSRoot != nil:
		if err := assembleFSRoot(c.FSRoot); err != nil {
			return err
		}
	}
	st.mark("root assembled")
	if err := mountVolumes(*c); err != nil {
		return err
	}
	st.mark("volumes mounted")
	if err := setupIdentity(*c); err != nil {
		return err
	}
	if err := setupTmpfs(*c); err != nil {
		return err
	}
	st.mark("identity and tmpfs")
	nr := <-netDone
	if nr.err != nil {
		return fmt.Errorf("network: %w", nr.err)
	}
	st.markAt("network configured", nr.at)
	env, err := installTrust("/", stagedTLS)
	if err != nil {
		log.Warn("tls: installing the certificates into the trust store", "err", err)
	}
	c.Env = addEnvDefaults(c.Env, env)
	for _, d := range []string{runtimeDir + "/scripts", "/run"} {
		os.MkdirAll(d, defaultDirMode)
	}
	st.mark("trust store")
	return nil
}

// stageLog records when each step of init ended, for core.ready's
// InitStages (the host's boot timeline). A nil *stageLog records nothing.
type stageLog []agentproto.InitStage

func (l *stageLog) mark(name string) { l.markAt(name, uint64(bootTime())) }

// markAt records a step that ended at ns (CLOCK_BOOTTIME), for one that
// ran concurrently with others.
func (l *stageLog) markAt(name string, ns uint64) {
	if l != nil {
		*l = append(*l, agentproto.InitStage{Name: name, Ns: ns})
	}
}

// setClock sets the realtime clock to the host's launch time plus the time
// since this kernel started (CLOCK_BOOTTIME), the best estimate the guest has
// of "now" (the emulated RTC, where there is one, counts whole seconds).
func setClock(hostNs int64) error {
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return err
	}
	ts := unix.NsecToTimespec(hostNs + boot.Nano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// initramfsScripts is where the host puts the sandbox's scripts in the boot
// initramfs (guestkernel.ScriptsPath).
const initramfsScripts = "/msb/scripts"

// installScripts copies the scripts the host shipped in the initramfs into
// the runtime dir, which survives the switch to the real root (the initramfs
// does not).
func installScripts(src, dst string) error {
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}
