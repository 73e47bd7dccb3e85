package vmm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/passthrough"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/virtioblk"
	"github.com/msb-go/msb/internal/virtio/virtioconsole"
	"github.com/msb-go/msb/internal/virtio/virtiofs"
	"github.com/msb-go/msb/internal/virtio/virtionet"
	"github.com/msb-go/msb/internal/virtio/virtiorng"
)

// AgentPortName is the virtio-console port agentd opens.
const AgentPortName = "agent"

// ErrUnsupported reports a machine.Spec feature the native VMM lacks.
var ErrUnsupported = errors.New("not supported by the native vmm")

// NewFromSpec builds a Machine for a backend-neutral spec: its disks become
// virtio-blk devices (in order, so the first is /dev/vda), the agent port a
// virtio-console port named "agent", the network a virtio-net device over
// the spec's frame stream, each share a virtio-fs device, plus a
// virtio-rng. NewFromSpec takes ownership of spec.Agent and spec.Net.Conn
// whatever its outcome: the Machine closes them in Close, or NewFromSpec
// does when it fails; the caller must not close them. The console goes to
// spec.Console, which is not closed.
func NewFromSpec(spec *machine.Spec, log *slog.Logger) (*Machine, error) {
	set, err := buildDevices(spec, log)
	if err != nil {
		return nil, err
	}
	cfg := Config{
		Kernel:    spec.Kernel,
		Initrd:    spec.Initrd,
		Cmdline:   strings.Fields(spec.KernelCmdline()),
		VCPUs:     spec.VCPUs,
		MemoryMiB: spec.MemoryMiB,
		Devices:   set.devs,
		Logger:    log,
	}
	if spec.Console != nil {
		cfg.Console = spec.Console
	}
	m, err := New(cfg)
	set.devs = nil // New owns them now, and closed them if it failed
	if err != nil {
		set.close()
		return nil, err
	}
	m.closers = set.closers
	return m, nil
}

// deviceSet is what buildDevices made: the devices in bus order, the files
// and file systems behind them, and the spec's streams it took over.
type deviceSet struct {
	devs    []virtio.Device
	closers []io.Closer
	owned   []*os.File
}

// close releases everything in s, for an error path.
func (s *deviceSet) close() {
	for _, d := range s.devs {
		if c, ok := d.(io.Closer); ok {
			c.Close()
		}
	}
	for _, c := range s.closers {
		c.Close()
	}
	for _, f := range s.owned {
		f.Close() // double closes are harmless here
	}
}

// buildDevices makes spec's devices in the order the guest finds them:
// disks (vda, vdb, …), the agent console, the network, shares, rng. It
// takes over spec.Agent and spec.Net.Conn whatever its outcome.
func buildDevices(spec *machine.Spec, log *slog.Logger) (_ *deviceSet, err error) {
	set := &deviceSet{}
	if spec.Agent != nil {
		set.owned = append(set.owned, spec.Agent)
	}
	if spec.Net != nil && spec.Net.Conn != nil {
		set.owned = append(set.owned, spec.Net.Conn)
	}
	defer func() {
		if err != nil {
			set.close()
		}
	}()
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("machine spec: %w", err)
	}
	for i, d := range spec.Disks {
		dev, f, err := newDisk(d)
		if f != nil {
			set.closers = append(set.closers, f)
		}
		if err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		set.devs = append(set.devs, dev)
	}
	if spec.Agent != nil {
		agent, err := pollable(spec.Agent)
		if err != nil {
			return nil, fmt.Errorf("agent port: %w", err)
		}
		set.owned = append(set.owned, agent)
		dev, err := virtioconsole.New(virtioconsole.Config{Ports: []virtioconsole.Port{{Name: AgentPortName, Conn: agent}}})
		if err != nil {
			return nil, fmt.Errorf("agent port: %w", err)
		}
		set.devs = append(set.devs, dev)
	}
	switch {
	case spec.Net != nil && spec.Net.Device != nil:
		dev, ok := spec.Net.Device.(virtio.Device)
		if !ok || dev.Type() != virtio.VIRTIO_ID_NET {
			return nil, fmt.Errorf("net: %T is not a virtio-net device", spec.Net.Device)
		}
		set.devs = append(set.devs, dev)
	case spec.Net != nil:
		dev, stream, err := NewNet(*spec.Net)
		if err != nil {
			return nil, fmt.Errorf("net: %w", err)
		}
		set.closers = append(set.closers, stream)
		set.devs = append(set.devs, dev)
	}
	for i, sh := range spec.Shares {
		dev, fsys, err := NewShare(sh, log)
		if err != nil {
			return nil, fmt.Errorf("share %d: %w", i, err)
		}
		set.closers = append(set.closers, fsys)
		set.devs = append(set.devs, dev)
	}
	if spec.Vsock != nil {
		dev, ok := spec.Vsock.Device.(virtio.Device)
		if !ok {
			return nil, fmt.Errorf("vsock: %T is not a virtio device", spec.Vsock.Device)
		}
		set.devs = append(set.devs, dev)
	}
	set.devs = append(set.devs, virtiorng.New())
	return set, nil
}

// newDisk opens a disk image as a virtio-blk device. The file, when
// opened, is returned for the caller to close.
func newDisk(d machine.Disk) (*virtioblk.Device, *os.File, error) {
	flag := os.O_RDWR
	if d.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, f, err
	}
	dev, err := virtioblk.New(virtioblk.Config{
		Backend:   virtioblk.File{File: f},
		SizeBytes: uint64(fi.Size()),
		ReadOnly:  d.ReadOnly,
		Serial:    d.Serial,
	})
	return dev, f, err
}

// NewNet returns the virtio-net device for a Net without Device: the frames
// the guest sends and receives travel over n.Conn, a stream in QEMU's
// stream-netdev framing whose other end is a host network stack. It takes
// over n.Conn once it succeeds; the returned closer ends the stream (and its
// reader) and must be closed after the device. (The sandbox process builds
// its device on its stack's FrameLink instead, with no stream between.)
func NewNet(n machine.Net) (*virtionet.Device, io.Closer, error) {
	if n.Conn == nil {
		return nil, nil, errors.New("no frame stream")
	}
	mac, err := net.ParseMAC(n.MAC)
	if err != nil {
		return nil, nil, err
	}
	conn, err := pollable(n.Conn)
	if err != nil {
		return nil, nil, err
	}
	stream := newStreamBackend(conn)
	dev, err := virtionet.New(virtionet.Config{Backend: stream, MAC: mac})
	if err != nil {
		stream.Close()
		return nil, nil, err
	}
	return dev, stream, nil
}

// NewShare returns the virtio-fs device for sh and the file system it
// serves: the host directory sh.Path under sh.Tag, served by the
// passthrough file system, which keeps the guest beneath sh.Path and fails
// mutating requests with EROFS when sh.ReadOnly and growth beyond
// sh.QuotaBytes with ENOSPC. The file system must be
// closed after the device.
func NewShare(sh machine.Share, log *slog.Logger) (*virtiofs.Device, io.Closer, error) {
	fi, err := os.Stat(sh.Path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s: %w", sh.Path, unix.ENOTDIR)
	}
	fsys, err := passthrough.New(sh.Path, passthrough.Options{
		ReadOnly: sh.ReadOnly, QuotaBytes: sh.QuotaBytes, OnlyName: sh.OnlyName, Submounts: sh.Submounts, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	dev, err := virtiofs.New(virtiofs.Config{Tag: sh.Tag, FS: fsys, Logger: log})
	if err != nil {
		fsys.Close()
		return nil, nil, err
	}
	return dev, fsys, nil
}

// pollable returns a duplicate of f's descriptor in non-blocking mode,
// wrapped so that it uses the runtime poller, and closes f. Sockets from
// syscall.Socketpair wrapped with os.NewFile are blocking, and a blocking
// Read cannot be interrupted by Close, which would leave device goroutines
// (and Machine.Close) stuck.
func pollable(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("set %s non-blocking: %w", f.Name(), err)
	}
	nf := os.NewFile(uintptr(nfd), f.Name())
	f.Close()
	return nf, nil
}
