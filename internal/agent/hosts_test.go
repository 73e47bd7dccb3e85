package agent

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHostsFile(t *testing.T) {
	const tail = "fe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
	gw4 := netip.MustParseAddr("100.96.0.5")
	gw6 := netip.MustParseAddr("fd42:6d73:62:1::1")
	tests := []struct {
		name     string
		hostname string
		alias    string
		gw4, gw6 netip.Addr
		want     string
	}{
		{name: "with hostname", hostname: "box",
			want: "127.0.0.1 localhost box\n::1 localhost ip6-localhost ip6-loopback box\n" + tail},
		{name: "without hostname",
			want: "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" + tail},
		{name: "alias v4 and v6", hostname: "box", alias: "host.microsandbox.internal", gw4: gw4, gw6: gw6,
			want: "127.0.0.1 localhost box\n::1 localhost ip6-localhost ip6-loopback box\n" +
				"100.96.0.5 host.microsandbox.internal\nfd42:6d73:62:1::1 host.microsandbox.internal\n" + tail},
		{name: "alias v4 only", alias: "host.microsandbox.internal", gw4: gw4,
			want: "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" +
				"100.96.0.5 host.microsandbox.internal\n" + tail},
		{name: "no alias", hostname: "box", gw4: gw4, gw6: gw6,
			want: "127.0.0.1 localhost box\n::1 localhost ip6-localhost ip6-loopback box\n" + tail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, hostsFile(tc.hostname, tc.alias, tc.gw4, tc.gw6)); d != "" {
				t.Errorf("hosts mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	got := resolvConf(netip.MustParseAddr("10.0.0.1"), netip.Addr{}, netip.MustParseAddr("fd00::1"))
	if want := "nameserver 10.0.0.1\nnameserver fd00::1\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestProfileWithScripts(t *testing.T) {
	block := profileBegin + "\n" + `case ":$PATH:" in *":/.msb/scripts:"*) ;; *) PATH="/.msb/scripts:$PATH"; export PATH ;; esac` + "\n" + profileEnd + "\n"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", block},
		{"append", "export A=1\n", "export A=1\n" + block},
		{"missing newline", "export A=1", "export A=1\n" + block},
		{"idempotent", "export A=1\n" + block, "export A=1\n" + block},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := profileWithScripts(tc.in); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}

func TestProfileBlockInShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script := profileWithScripts("") + profileWithScripts("") + `echo "$PATH"`
	for _, tc := range []struct{ path, want string }{
		{"/bin", "/.msb/scripts:/bin"},
		{"/.msb/scripts:/bin", "/.msb/scripts:/bin"},
	} {
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = []string{"PATH=" + tc.path}
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("PATH=%s: got %q (%v); want %q", tc.path, out, err, tc.want)
		}
	}
}
