package qemu

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/msb-go/msb/internal/machine"
)

func TestArgs(t *testing.T) {
	agent, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	spec := &machine.Spec{
		Kernel: "/k/vmlinux", Initrd: "/k/initrd", VCPUs: 2, MemoryMiB: 512,
		Cmdline: []string{"MSB_PROBE=1"},
		Disks: []machine.Disk{
			{Path: "/c/lower,1.erofs", ReadOnly: true, Serial: "lower"},
			{Path: "/s/upper.ext4"},
		},
		Agent:  agent,
		TSCKHz: 2100000,
	}
	got, err := Args(spec, Config{Accel: AccelTCG})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-M", "microvm,acpi=off,rtc=on", "-accel", "tcg",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-smp", "2", "-m", "512", "-kernel", "/k/vmlinux", "-initrd", "/k/initrd",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-drive", "id=vd0,if=none,format=raw,file=/c/lower,,1.erofs,readonly=on,cache=unsafe",
		"-device", "virtio-blk-device,drive=vd0,serial=lower",
		"-drive", "id=vd1,if=none,format=raw,file=/s/upper.ext4,cache=writeback",
		"-device", "virtio-blk-device,drive=vd1",
		"-chardev", "socket,id=agent,fd=3",
		"-device", "virtio-serial-device,max_ports=2",
		"-device", "virtserialport,chardev=agent,name=agent",
		"-device", "virtio-rng-device",
		"-append", "console=ttyS0 panic=-1 reboot=t rdinit=/init quiet tsc=reliable no_timer_check cryptomgr.notests 8250.nr_uarts=1 random.trust_cpu=on msb_apic_khz=1000000 noreplace-smp tsc_early_khz=2100000 MSB_PROBE=1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}

	kvmArgs, err := Args(spec, Config{Accel: AccelKVM})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(kvmArgs, " "), "-accel kvm -cpu host") && !strings.Contains(strings.Join(kvmArgs, " "), "-cpu host") {
		t.Errorf("kvm args lack -cpu host: %q", kvmArgs)
	}

	bad := *spec
	bad.VCPUs = 0
	if _, err := Args(&bad, Config{}); err == nil {
		t.Errorf("Args with 0 vcpus = nil error; want error")
	}
	shares := *spec
	shares.Shares = []machine.Share{{Tag: "x", Path: "/x"}}
	if _, err := Args(&shares, Config{}); err == nil {
		t.Errorf("Args with a share without Conn = nil error; want error")
	}
}

func TestArgsShares(t *testing.T) {
	conn, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	spec := &machine.Spec{
		Kernel: "/k/vmlinux", VCPUs: 1, MemoryMiB: 256,
		Shares: []machine.Share{
			{Tag: "work", Path: "/w", Conn: conn},
			{Tag: "ro,data", Path: "/d", ReadOnly: true, Conn: conn},
		},
	}
	got, err := Args(spec, Config{Accel: AccelTCG})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-M", "microvm,acpi=off,rtc=on,memory-backend=mem", "-accel", "tcg",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-smp", "1", "-m", "256", "-kernel", "/k/vmlinux",
		"-object", "memory-backend-memfd,id=mem,size=256M,share=on",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-chardev", "socket,id=fs0,fd=5",
		"-device", "vhost-user-fs-device,chardev=fs0,tag=work",
		"-chardev", "socket,id=fs1,fd=6",
		"-device", "vhost-user-fs-device,chardev=fs1,tag=ro,,data",
		"-device", "virtio-rng-device",
		"-append", "console=ttyS0 panic=-1 reboot=t rdinit=/init quiet tsc=reliable no_timer_check cryptomgr.notests 8250.nr_uarts=1 random.trust_cpu=on msb_apic_khz=1000000 noreplace-smp",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}
	long := *spec
	long.Shares = []machine.Share{{Tag: strings.Repeat("t", 37), Conn: conn}}
	if _, err := Args(&long, Config{}); err == nil {
		t.Errorf("Args with a 37-byte tag = nil error; want error")
	}
}

// TestArgsRAM pins where shared guest RAM lives: a memfd, or the RAM file
// the caller passed, reopened through the fd that follows the vsock
// device's and mapped on 2 MiB boundaries.
func TestArgsRAM(t *testing.T) {
	conn, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tests := []struct {
		name string
		spec machine.Spec
		want string
	}{
		{"memfd", machine.Spec{Vsock: &machine.Vsock{Conn: conn}},
			"memory-backend-memfd,id=mem,size=256M,share=on"},
		{"RAM file after the vsock fd", machine.Spec{Vsock: &machine.Vsock{Conn: conn}, RAM: conn},
			"memory-backend-file,id=mem,size=256M,share=on,mem-path=/proc/self/fd/6,align=2M"},
		{"RAM file after a share and the vsock fd", machine.Spec{
			Shares: []machine.Share{{Tag: "w", Path: "/w", Conn: conn}},
			Vsock:  &machine.Vsock{Conn: conn}, RAM: conn},
			"memory-backend-file,id=mem,size=256M,share=on,mem-path=/proc/self/fd/7,align=2M"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.Kernel, spec.VCPUs, spec.MemoryMiB = "/k/vmlinux", 1, 256
			args, err := Args(&spec, Config{Accel: AccelTCG})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for i, a := range args {
				if a == "-object" && i+1 < len(args) {
					got = args[i+1]
				}
			}
			if got != tc.want {
				t.Errorf("guest RAM object %q; want %q", got, tc.want)
			}
			if spec.RAM != nil && fdRAM(&spec) != fdVsock(&spec)+1 {
				t.Errorf("fdRAM %d does not follow fdVsock %d", fdRAM(&spec), fdVsock(&spec))
			}
		})
	}
}

// TestArgsNet pins both ways QEMU gets the network: a stream netdev on the
// inherited fd, or only the front-end of the caller's vhost-user device at
// a socket path (which needs guest RAM in a shared memfd).
func TestArgsNet(t *testing.T) {
	conn, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tests := []struct {
		name string
		net  machine.Net
		want []string // from -M to the last device before -append
	}{
		{"stream", machine.Net{Conn: conn, MAC: "02:6d:73:00:01:02"}, []string{
			"-M", "microvm,acpi=off,rtc=on", "-accel", "tcg",
			"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
			"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
			"-smp", "1", "-m", "256", "-kernel", "/k/vmlinux",
			"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
			"-netdev", "socket,id=net0,fd=4",
			"-device", "virtio-net-device,netdev=net0,mac=02:6d:73:00:01:02",
			"-device", "virtio-rng-device",
		}},
		{"vhost-user", machine.Net{VhostUserPath: "/s/run,time/net.sock", MAC: "02:6d:73:00:01:02"}, []string{
			"-M", "microvm,acpi=off,rtc=on,memory-backend=mem", "-accel", "tcg",
			"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
			"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
			"-smp", "1", "-m", "256", "-kernel", "/k/vmlinux",
			"-object", "memory-backend-memfd,id=mem,size=256M,share=on",
			"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
			"-chardev", "socket,id=netc,path=/s/run,,time/net.sock",
			"-netdev", "vhost-user,id=net0,chardev=netc",
			"-device", "virtio-net-device,netdev=net0,mac=02:6d:73:00:01:02",
			"-device", "virtio-rng-device",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := &machine.Spec{Kernel: "/k/vmlinux", VCPUs: 1, MemoryMiB: 256, Net: &tc.net}
			got, err := Args(spec, Config{Accel: AccelTCG})
			if err != nil {
				t.Fatal(err)
			}
			if i := slices.Index(got, "-append"); i >= 0 {
				got = got[:i]
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Args (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want [2]int
		err  bool
	}{
		{"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright", [2]int{7, 2}, false},
		{"QEMU emulator version 10.1.0\n", [2]int{10, 1}, false},
		{"something else", [2]int{}, true},
	}
	for _, tc := range tests {
		got, err := parseVersion(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 4}
	tb.Write([]byte("abc"))
	tb.Write([]byte("def"))
	if got := tb.String(); got != "cdef" {
		t.Errorf("tail = %q; want %q", got, "cdef")
	}
}

// TestArgsTransports: microvm has eight virtio-mmio slots. The entropy
// device gives its slot up when the others need it; beyond eight, Args
// refuses with ErrTooManyDevices instead of QEMU failing at start.
func TestArgsTransports(t *testing.T) {
	agent, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	peer := agent // Args only needs the files to exist
	shares := func(n int) []machine.Share {
		var out []machine.Share
		for i := range n {
			out = append(out, machine.Share{Tag: "t" + strconv.Itoa(i), Path: "/s", Conn: peer})
		}
		return out
	}
	disks := []machine.Disk{{Path: "/l", ReadOnly: true}, {Path: "/u"}}
	for _, tc := range []struct {
		shares    int
		vsock     bool
		wantRNG   bool
		wantVsock bool
		wantErr   bool
	}{
		{shares: 4, wantRNG: true},  // 2 disks + agent + 4 shares = 7, rng the 8th
		{shares: 5, wantRNG: false}, // 8 without rng
		{shares: 6, wantErr: true},  // 9
		// The vsock device yields to the required ones, rng to it.
		{shares: 3, vsock: true, wantRNG: true, wantVsock: true},
		{shares: 4, vsock: true, wantVsock: true},
		{shares: 5, vsock: true},
		{shares: 6, vsock: true, wantErr: true},
	} {
		spec := &machine.Spec{Kernel: "/k", VCPUs: 1, MemoryMiB: 256, Disks: disks, Agent: agent, Shares: shares(tc.shares)}
		if tc.vsock {
			spec.Vsock = &machine.Vsock{Conn: peer}
		}
		got, err := Args(spec, Config{})
		if tc.wantErr {
			if !errors.Is(err, ErrTooManyDevices) {
				t.Errorf("%d shares: Args error = %v; want ErrTooManyDevices", tc.shares, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d shares: %v", tc.shares, err)
		}
		if rng := slices.Contains(got, "virtio-rng-device"); rng != tc.wantRNG {
			t.Errorf("%d shares: virtio-rng-device present = %v; want %v", tc.shares, rng, tc.wantRNG)
		}
		vs := slices.Contains(got, "vhost-user-vsock-device,chardev=vsock")
		if vs != tc.wantVsock {
			t.Errorf("%d shares, vsock %v: vhost-user-vsock-device present = %v; want %v", tc.shares, tc.vsock, vs, tc.wantVsock)
		}
		if want := "socket,id=vsock,fd=" + strconv.Itoa(fdShare0+tc.shares); vs && !slices.Contains(got, want) {
			t.Errorf("%d shares: no %q in %q", tc.shares, want, got)
		}
		if vs && !slices.Contains(got, "microvm,acpi=off,rtc=on,memory-backend=mem") {
			t.Errorf("vsock without shared guest memory: %q", got)
		}
	}
}
