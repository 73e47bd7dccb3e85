package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/virtio/vhostuser"
	"github.com/msb-go/msb/internal/vmm"
)

// mounts turns the launch's mounts into machine devices and the guest
// environment agentd mounts them from: binds become virtio-fs shares (tag
// msb_vol_N) served by the passthrough file system (a bind of a file: its
// directory narrowed to it, in MSB_FILE_MOUNTS), disks extra virtio-blk
// devices found by serial (msb_disk_N), tmpfs entries MSB_TMPFS. A bind or
// disk whose host path is missing fails here, as boot stage mount with its
// errno, before anything boots. A live root share comes first (rootShare).
func (s *sandbox) mounts(spec *machine.Spec) ([]string, error) {
	env, err := s.rootShare(spec)
	if err != nil {
		return nil, err
	}
	if err := s.runtimeShare(spec); err != nil {
		return nil, err
	}
	var dirs, files, disks, tmpfs []string
	for i, m := range s.launch.Mounts {
		switch m.Kind {
		case launch.MountBind:
			tag := "msb_vol_" + strconv.Itoa(i)
			sh := machine.Share{Tag: tag, Path: m.Source, ReadOnly: m.ReadOnly, QuotaBytes: m.QuotaBytes, Submounts: m.Submounts}
			if file, err := filepath.EvalSymlinks(m.Source); err == nil && checkSource(file, false) == nil {
				// A single file: its directory, narrowed to it.
				sh.Path, sh.OnlyName = filepath.Dir(file), filepath.Base(file)
				files = append(files, tag+":"+sh.OnlyName+":"+m.Target+roSuffix(m.ReadOnly))
			} else if err := checkSource(m.Source, true); err != nil {
				return nil, launch.Fail("mount "+tag+":", err)
			} else {
				dirs = append(dirs, tag+":"+m.Target+roSuffix(m.ReadOnly))
			}
			spec.Shares = append(spec.Shares, sh)
		case launch.MountDisk:
			id := "msb_disk_" + strconv.Itoa(i)
			if err := checkSource(m.Source, false); err != nil {
				return nil, launch.Fail("mount "+id+":", err)
			}
			spec.Disks = append(spec.Disks, machine.Disk{Path: m.Source, ReadOnly: m.ReadOnly, Serial: id})
			e := id + ":" + m.Target
			if m.FSType != "" {
				e += ":" + m.FSType
			}
			disks = append(disks, e+roSuffix(m.ReadOnly))
		case launch.MountTmpfs:
			e := m.Target
			if m.SizeMiB > 0 {
				e += ",size=" + strconv.Itoa(m.SizeMiB)
			}
			if m.ReadOnly {
				e += ",ro"
			}
			tmpfs = append(tmpfs, e)
		}
	}
	for _, v := range []struct {
		name    string
		entries []string
	}{{"MSB_DIR_MOUNTS", dirs}, {"MSB_FILE_MOUNTS", files}, {"MSB_DISK_MOUNTS", disks}, {"MSB_TMPFS", tmpfs}} {
		if len(v.entries) > 0 {
			env = append(env, v.name+"="+strings.Join(v.entries, ";"))
		}
	}
	return env, nil
}

// rootShareTag is the virtio-fs tag of a live root.
const rootShareTag = "msb_root"

// rootShare serves the launch's live root directory, if any, as the first
// share (before the volumes, so their mount points resolve in it) and
// returns the MSB_FS_ROOT entry that makes agentd switch to it. Landlock
// admits it with the other shares in confineFiles.
func (s *sandbox) rootShare(spec *machine.Spec) ([]string, error) {
	l := s.launch
	if l.RootShare == "" {
		return nil, nil
	}
	if err := checkSource(l.RootShare, true); err != nil {
		return nil, launch.Fail(launch.PrefixRootfs, fmt.Errorf("live root: %w", err))
	}
	spec.Shares = append(spec.Shares, machine.Share{Tag: rootShareTag, Path: l.RootShare, ReadOnly: l.RootReadOnly})
	e := "MSB_FS_ROOT=tag=" + rootShareTag
	if l.RootReadOnly {
		e += ",ro"
	}
	return []string{e}, nil
}

func roSuffix(ro bool) string {
	if ro {
		return ":ro"
	}
	return ""
}

// checkSource reports a missing or mistyped host path with its errno, so
// the boot error carries it (and the ENOENT hint).
func checkSource(p string, dir bool) error {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return err
	case dir && !fi.IsDir():
		return &os.PathError{Op: "mount", Path: p, Err: syscall.ENOTDIR}
	case !dir && !fi.Mode().IsRegular():
		return &os.PathError{Op: "mount", Path: p, Err: syscall.EINVAL}
	}
	return nil
}

// serveShares serves spec's shares to QEMU over vhost-user: for each, a
// socketpair whose one end QEMU gets as the share's chardev, and a virtio-fs
// device (the same Go code the native VMM runs in process) on the other.
// Serving starts now, because QEMU performs the vhost-user handshake while
// it starts; undo stops it and joins the goroutines.
func (s *sandbox) serveShares(spec *machine.Spec, undo *cleanups) error {
	if len(spec.Shares) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	undo.add(func() { cancel(); wg.Wait() })
	for i := range spec.Shares {
		sh := &spec.Shares[i]
		dev, fsys, err := vmm.NewShare(*sh, s.log)
		if err != nil {
			return launch.Fail("mount "+sh.Tag+":", err)
		}
		undo.add(func() { dev.Close(); fsys.Close() })
		uc, theirs, err := vhostUserPair("vhost-user-" + sh.Tag)
		if err != nil {
			return err
		}
		sh.Conn = theirs
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := vhostuser.Serve(ctx, uc, dev, s.log); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("vhost-user share ended", "tag", sh.Tag, "err", err)
			}
		}()
	}
	return nil
}

// vhostUserPair makes the socketpair of one vhost-user device: the back-end
// end stays here, the front-end end goes to QEMU.
func vhostUserPair(name string) (*net.UnixConn, *os.File, error) {
	ours, theirs, err := socketPair(name)
	if err != nil {
		return nil, nil, launch.Fail(launch.PrefixBuildVM, fmt.Errorf("vhost-user socketpair: %w", err))
	}
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, nil, launch.Fail(launch.PrefixBuildVM, fmt.Errorf("vhost-user conn: %w", err))
	}
	return c.(*net.UnixConn), theirs, nil
}

// runtimeQuota bounds what the guest can write into its runtime share
// (heartbeat, scripts, certificates: a few KiB in practice).
const runtimeQuota = 16 << 20

// runtimeShare shares sandboxes/<name>/guest as the guest's /.msb (tag
// msb_runtime, which agentd mounts when it is there), so the host sees the
// guest's heartbeat.json. The directory is emptied at every boot: nothing
// in it is meaningful across runs, and all of it is guest-written.
func (s *sandbox) runtimeShare(spec *machine.Spec) error {
	dir := s.home.GuestDir(s.launch.Name)
	if err := os.RemoveAll(dir); err != nil {
		return launch.Fail("runtime mount:", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return launch.Fail("runtime mount:", err)
	}
	spec.Shares = append(spec.Shares, machine.Share{Tag: "msb_runtime", Path: dir, QuotaBytes: runtimeQuota})
	s.writeHostClock()
	return nil
}

// hostClockEvery is how often the host's clock is published to the guest.
const hostClockEvery = 5 * time.Second

// writeHostClock publishes the host's wall clock in the runtime share;
// agentd corrects the guest's clock from it (a guest behind the host fails
// certificate validity). It rewrites the file in place: a rename would
// leave the guest's cached entry on a deleted file.
func (s *sandbox) writeHostClock() {
	p := filepath.Join(s.home.GuestDir(s.launch.Name), "host-clock")
	_ = os.WriteFile(p, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)+"\n"), 0o644)
}

// publishClock rewrites the host clock file until ctx ends.
func (s *sandbox) publishClock(ctx context.Context) {
	t := time.NewTicker(hostClockEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.writeHostClock()
		}
	}
}
