// Package machine describes a microVM independently of the backend that runs
// it: kernel, initramfs, command line, vCPUs, memory, block devices, the agent
// console port, the network frame endpoint and shared directories. The qemu
// backend (internal/vmm/qemu) and the native KVM backend (internal/vmm) both
// take a Spec; nothing above them knows which one runs the guest.
package machine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Spec is one microVM. The zero value is not valid; see Validate.
type Spec struct {
	// Kernel is an uncompressed x86-64 vmlinux with a PVH entry (or a bzImage).
	Kernel string
	// Initrd is the initramfs (agentd as /init, optionally followed by a boot
	// environment archive).
	Initrd string
	// Cmdline holds kernel parameters beyond those the backend adds itself
	// (console, virtio-mmio device declarations, timing hints).
	Cmdline []string
	// VCPUs is the number of virtual CPUs (1–8; the guest kernel has NR_CPUS=8).
	VCPUs int
	// MemoryMiB is the guest RAM size.
	MemoryMiB int
	// Disks are virtio-blk devices in order: the first is /dev/vda.
	Disks []Disk
	// Agent is the host end of the virtio-console port named "agent". The
	// backend connects the guest port to it; the relay owns the other end.
	Agent *os.File
	// Console receives the guest's serial console (kernel.log). Nil discards.
	Console *os.File
	// Net, when set, gives the guest one virtio-net device whose frames go to
	// the host end of a stream socket (4-byte big-endian length prefix per
	// frame, as QEMU's stream netdev speaks), or, on the qemu backend, to
	// the device the caller serves over vhost-user (Net.VhostUserPath).
	Net *Net
	// Shares are virtio-fs shared directories.
	Shares []Share
	// Vsock, when set, gives the guest a virtio-vsock device, the agent's
	// bulk transport (agentproto.CapVsock).
	Vsock *Vsock
	// TSCKHz, when non-zero, is the host TSC rate handed to the guest
	// (tsc_early_khz) so it skips calibrating its TSC, which stalls or
	// fails under emulation and nested virtualization. See HostTSCKHz.
	TSCKHz int
	// RAM, when set, is a file of MemoryMiB bytes for the qemu backend to
	// keep guest RAM in where that RAM must be shared (vhost-user devices),
	// instead of a memfd: internal/hostmem makes one that the host maps
	// with huge pages. The native VMM allocates its own memory and ignores
	// it.
	RAM *os.File
}

// CloseStreams closes the guest-side stream ends s carries (the agent port,
// the network's frame stream, the shares' vhost-user connections) and the
// RAM file: what a Backend owns once Start is called, and what a caller
// still holds if it never gets that far.
func (s *Spec) CloseStreams() {
	if s.Agent != nil {
		s.Agent.Close()
	}
	if s.RAM != nil {
		s.RAM.Close()
	}
	if s.Net != nil && s.Net.Conn != nil {
		s.Net.Conn.Close()
	}
	for _, sh := range s.Shares {
		if sh.Conn != nil {
			sh.Conn.Close()
		}
	}
	if s.Vsock != nil && s.Vsock.Conn != nil {
		s.Vsock.Conn.Close()
	}
}

// Vsock is a virtio-vsock device the caller built and dials through
// (internal/virtio/virtiovsock): the host side of its connections lives in
// the caller, whichever backend runs the guest.
type Vsock struct {
	// Device is used by the native VMM, which puts it on virtio-mmio: a
	// virtio.Device, typed any so that this package names no device
	// package.
	Device any
	// Conn is used by the qemu backend only: the front-end end of a
	// connected unix stream socket whose other end serves Device over
	// vhost-user (vhost-user-vsock-device).
	Conn *os.File
}

// Disk is one virtio-blk device.
type Disk struct {
	Path     string
	ReadOnly bool
	// Serial is reported by VIRTIO_BLK_T_GET_ID (at most 20 bytes); the guest
	// finds disks by it in /sys/block/vd*/serial.
	Serial string
}

// Net is the guest's virtio-net device: one the caller built (Device), or
// one on a frame stream (Conn).
type Net struct {
	// Device, when set, is a virtio-net device the caller built on its
	// network stack (internal/virtio/virtionet on a netstack.FrameLink):
	// a virtio.Device, typed any so that this package names no device
	// package. The native VMM puts it on virtio-mmio; the caller serves it
	// to the qemu backend at VhostUserPath. Conn is then unused.
	Device any
	// Conn is the guest end of a frame stream, for a Net without Device:
	// the native VMM puts a virtio-net device on it (vmm.NewNet), QEMU
	// gets it as a stream netdev.
	Conn *os.File
	MAC  string // "02:6d:73:00:01:02"
	// VhostUserPath is used by the qemu backend only: a unix socket the
	// caller listens on and serves Device from over vhost-user once QEMU
	// connects (-netdev vhost-user). QEMU is then only
	// the front-end: the frames never pass through it, and the device
	// offers the guest checksum and TCP segmentation offload, which QEMU's
	// stream netdev cannot (it has no virtio-net header). A path, not an
	// inherited descriptor as for shares and vsock: QEMU 7.2's vhost-user
	// netdev refuses a chardev made from an fd ("does not support FD
	// passing"). Without it, QEMU gets Conn as a stream netdev.
	VhostUserPath string
}

// Share is one virtio-fs device.
type Share struct {
	Tag      string
	Path     string
	ReadOnly bool
	// QuotaBytes, if positive, bounds the apparent size of the regular
	// files in the share; growth beyond it fails with ENOSPC.
	QuotaBytes int64
	// OnlyName, if set, serves only that regular file of Path (a bind of
	// a single file); see passthrough.Options.OnlyName.
	OnlyName string
	// Submounts serves file systems mounted below Path too; see
	// passthrough.Options.Submounts.
	Submounts bool
	// Conn is used by the qemu backend only: the front-end end of a
	// connected unix stream socket whose other end serves this share's
	// virtio-fs device over vhost-user (internal/virtio/vhostuser). The
	// serving side enforces Path and ReadOnly; QEMU sees only the tag.
	Conn *os.File
}

// KernelCmdline is the whole kernel command line of s on a backend: the
// backend's own words (its console, reboot method and device declarations),
// then the words every msb guest gets (GuestCmdline), then s.Cmdline. It is
// the one place the line is assembled; both backends call it.
func (s *Spec) KernelCmdline(backendWords ...string) string {
	words := append([]string{}, backendWords...)
	words = append(words, GuestCmdline(s.TSCKHz)...)
	return strings.Join(append(words, s.Cmdline...), " ")
}

// GuestCmdline returns the kernel parameters every msb guest gets on either
// backend (after the backend's own console and reboot parameters): init from
// the initramfs, a quiet console (every console byte is a VM exit), and
// timing hints. tscKHz, when non-zero, is the host TSC rate: the guest then
// skips calibrating its TSC, which stalls or fails under emulation and
// nested virtualization.
func GuestCmdline(tscKHz int) []string {
	words := []string{
		"rdinit=/init", "quiet",
		"tsc=reliable", "no_timer_check", "cryptomgr.notests",
		"8250.nr_uarts=1", "random.trust_cpu=on",
		// The local APIC timer's clock: 1 GHz in QEMU's APIC (every
		// accelerator's; QEMU's APIC_BUS_CYCLE_NS) and in KVM's in-kernel
		// one (our VMM's). Our kernel then skips calibrating it, two
		// 100 ms waits without a TSC deadline timer, as under TCG
		// (scripts/kernel/apic-timer-khz.patch; a kernel without it hands
		// the word to init's environment, which agentd ignores).
		"msb_apic_khz=1000000",
		// A one-CPU boot of an SMP kernel rewrites every LOCK prefix in
		// the kernel text (~7000 sites, 28 KiB of .smp_locks), each
		// through text_poke's temporary mm: two CR3 switches and TLB
		// flushes a site. Under TCG that was 60-80 ms of every boot
		// (medians of 10 alternating runs, 2026-12-06); a LOCK prefix left
		// in place costs a few cycles on one CPU and nothing under TCG,
		// which emits no atomics for a single vCPU.
		"noreplace-smp",
	}
	if tscKHz > 0 {
		words = append(words, "tsc_early_khz="+strconv.Itoa(tscKHz))
	}
	return words
}

// Limits on the machine shape that every backend supports.
const (
	MaxVCPUs     = 8
	MinMemoryMiB = 64
	MaxMemoryMiB = 64 << 10
	maxSerialLen = 20
)

// Validate reports the first problem with s, phrased for a user.
func (s *Spec) Validate() error {
	var errs []error
	if s.Kernel == "" {
		errs = append(errs, errors.New("no kernel"))
	}
	if s.VCPUs < 1 || s.VCPUs > MaxVCPUs {
		errs = append(errs, fmt.Errorf("vcpus %d out of range 1-%d", s.VCPUs, MaxVCPUs))
	}
	if s.MemoryMiB < MinMemoryMiB || s.MemoryMiB > MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("memory %d MiB out of range %d-%d", s.MemoryMiB, MinMemoryMiB, MaxMemoryMiB))
	}
	for i, d := range s.Disks {
		if d.Path == "" {
			errs = append(errs, fmt.Errorf("disk %d: no path", i))
		}
		if len(d.Serial) > maxSerialLen || strings.ContainsAny(d.Serial, ",=") {
			errs = append(errs, fmt.Errorf("disk %d: serial %q must be at most %d bytes without ',' or '='", i, d.Serial, maxSerialLen))
		}
	}
	for _, w := range s.Cmdline {
		if strings.ContainsAny(w, " \t\n") && !strings.Contains(w, `"`) {
			errs = append(errs, fmt.Errorf("kernel parameter %q contains whitespace", w))
		}
	}
	return errors.Join(errs...)
}
