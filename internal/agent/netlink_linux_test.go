package agent

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread moved into a fresh network namespace. The
// thread is never unlocked, so the runtime discards it afterwards.
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("network namespaces need root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		fn()
	}()
	<-done
}

func TestSetupNetwork(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip) to create a veth pair and read back the state")
	}
	inNetns(t, func() {
		// ip runs forked from this locked thread, so in its namespace.
		if out, err := exec.Command("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1").CombinedOutput(); err != nil {
			t.Skipf("create veth: %v: %s", err, out)
		}
		cfg, err := ParseConfig([]string{
			"MSB_NET=iface=veth0,mac=02:6d:73:00:01:02,mtu=1400",
			"MSB_NET_IPV4=addr=100.96.0.6/30,gw=100.96.0.5,dns=100.96.0.5",
			"MSB_NET_IPV6=addr=fd42:6d73:62:1::2/64,gw=fd42:6d73:62:1::1",
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := setupNetwork(cfg); err != nil {
			t.Fatalf("setupNetwork: %v", err)
		}
		// Idempotent: a second run finds everything in place.
		if err := setupNetwork(cfg); err != nil {
			t.Fatalf("second setupNetwork: %v", err)
		}
		lo, _ := net.InterfaceByName("lo")
		if lo.Flags&net.FlagUp == 0 {
			t.Errorf("lo is down")
		}
		ifc, err := net.InterfaceByName("veth0")
		if err != nil {
			t.Fatal(err)
		}
		if ifc.MTU != 1400 || ifc.HardwareAddr.String() != "02:6d:73:00:01:02" || ifc.Flags&net.FlagUp == 0 {
			t.Errorf("veth0 = mtu %d mac %s flags %v; want 1400 02:6d:73:00:01:02 up", ifc.MTU, ifc.HardwareAddr, ifc.Flags)
		}
		addrs := func(i *net.Interface) string {
			as, _ := i.Addrs()
			var s []string
			for _, a := range as {
				s = append(s, a.String())
			}
			return strings.Join(s, " ")
		}
		for _, want := range []string{"127.0.0.1/8", "::1/128"} {
			if !strings.Contains(addrs(lo), want) {
				t.Errorf("lo addresses %q; want %s", addrs(lo), want)
			}
		}
		for _, want := range []string{"100.96.0.6/30", "fd42:6d73:62:1::2/64"} {
			if !strings.Contains(addrs(ifc), want) {
				t.Errorf("veth0 addresses %q; want %s", addrs(ifc), want)
			}
		}
		for _, fam := range []string{"-4", "-6"} {
			out, err := exec.Command("ip", fam, "route", "show", "default").CombinedOutput()
			want := map[string]string{"-4": "default via 100.96.0.5 dev veth0", "-6": "default via fd42:6d73:62:1::1 dev veth0"}[fam]
			if err != nil || !strings.Contains(string(out), want) {
				t.Errorf("ip %s route: %q (%v); want %q", fam, out, err, want)
			}
		}
	})
}

func TestParseAck(t *testing.T) {
	ack := func(seq uint32, code int32) []byte {
		b := make([]byte, 36)
		le := func(off int, v uint32) {
			b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		le(0, 36)
		b[4] = unix.NLMSG_ERROR
		le(8, seq)
		le(16, uint32(code))
		return b
	}
	tests := []struct {
		name     string
		in       []byte
		seq      uint32
		wantDone bool
		wantErr  string // "" = nil
	}{
		{"ack", ack(7, 0), 7, true, ""},
		{"error", ack(7, -int32(unix.EEXIST)), 7, true, unix.EEXIST.Error()},
		{"other seq", ack(6, 0), 7, false, ""},
		{"short", []byte{1, 2, 3}, 7, false, ""},
		{"bad length", append([]byte{0xff, 0xff, 0, 0}, make([]byte, 20)...), 7, true, "netlink: malformed reply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done, err := parseAck(tc.in, tc.seq)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if done != tc.wantDone || gotErr != tc.wantErr {
				t.Errorf("got %v, %v; want %v, %v", done, err, tc.wantDone, tc.wantErr)
			}
		})
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add([]byte{36, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint32(7))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		parseAck(b, seq)
	})
}

// TestIfIndex checks the link lookup setupNetwork uses against the
// kernel's own numbering, and that a missing or impossible name is an
// error.
func TestIfIndex(t *testing.T) {
	inNetns(t, func() {
		nl, err := openNetlink()
		if err != nil {
			t.Fatal(err)
		}
		defer nl.Close()
		tests := []struct {
			name    string
			wantErr bool
		}{
			{"lo", false},
			{"nosuchlink0", true},
			{"a-name-longer-than-ifnamsiz", true},
			{"", true},
		}
		for _, tc := range tests {
			got, err := nl.ifIndex(tc.name)
			if tc.wantErr {
				if err == nil {
					t.Errorf("ifIndex(%q) = %d; want an error", tc.name, got)
				}
				continue
			}
			ifc, ierr := net.InterfaceByName(tc.name)
			if err != nil || ierr != nil || got != ifc.Index {
				t.Errorf("ifIndex(%q) = %d, %v; want %v (%v)", tc.name, got, err, ifc, ierr)
			}
		}
	})
}
