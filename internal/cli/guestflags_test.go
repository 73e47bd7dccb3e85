package cli

import (
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/agentproto"
)

func TestParseRlimits(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []agentproto.Rlimit
		wantErr string // substring
	}{
		{name: "soft only", in: []string{"nofile=1024"}, want: []agentproto.Rlimit{{Resource: "nofile", Soft: 1024, Hard: 1024}}},
		{name: "soft and hard", in: []string{"NPROC=10:20"}, want: []agentproto.Rlimit{{Resource: "nproc", Soft: 10, Hard: 20}}},
		{name: "unlimited", in: []string{"core=unlimited"}, want: []agentproto.Rlimit{{Resource: "core", Soft: agentproto.RlimitUnlimited, Hard: agentproto.RlimitUnlimited}}},
		{name: "typo suggests", in: []string{"nofil=10"}, wantErr: `did you mean "nofile"?`},
		{name: "far name lists", in: []string{"bogus=1"}, wantErr: "resources: cpu"},
		{name: "soft above hard", in: []string{"nofile=10:5"}, wantErr: "above hard"},
		{name: "no value", in: []string{"nofile"}, wantErr: "RESOURCE=SOFT[:HARD]"},
		{name: "twice", in: []string{"nofile=1", "nofile=2"}, wantErr: "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRlimits(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseRlimits(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) || got[0] != tc.want[0] {
				t.Errorf("parseRlimits(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels("--label", []string{"team=web", "env=", "a=b=c"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "a=b=c,env=,team=web"; formatLabels(got) != want {
		t.Errorf("parseLabels = %q; want %q", formatLabels(got), want)
	}
	for _, bad := range [][]string{{"nokey"}, {"=v"}, {"a b=c"}, {"k=1", "k=2"}} {
		if _, err := parseLabels("--label", bad); err == nil {
			t.Errorf("parseLabels(%q) = nil error; want one", bad)
		}
	}
}

// TestGuestFlagErrors runs the CLI with bad guest options: each fails before
// anything boots, with the flag named and a hint where msb has one.
func TestGuestFlagErrors(t *testing.T) {
	t.Setenv("MSB_HOME", t.TempDir())
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"create", "--rootfs", dir, "--rlimit", "nofiles=1"}, `did you mean "nofile"?`},
		{[]string{"create", "--rootfs", dir, "--log-level", "debg"}, `did you mean "debug"?`},
		{[]string{"create", "--rootfs", dir, "--shell", "bash"}, "absolute guest path"},
		{[]string{"create", "--rootfs", dir, "--init", "sbin/init"}, "--init"},
		{[]string{"create", "--rootfs", dir, "--init-arg", "x"}, "need --init"},
		{[]string{"create", "--rootfs", dir, "--label", "x"}, "KEY=VALUE"},
		{[]string{"create", "--rootfs", dir, "-H", "bad_host!"}, "hostname"},
		{[]string{"exec", "--rlimit", "nprocs=1", "sb", "--", "true"}, `did you mean "nproc"?`},
		{[]string{"ls", "--label", "nokey"}, "KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errs := runMSB(t, tc.args...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Errorf("msb %q = exit %d, stderr %q; want failure mentioning %q", tc.args, code, errs, tc.want)
			}
		})
	}
}
