package launch

import (
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    Port
		wantErr string
	}{
		{in: "8080:80", want: Port{HostPort: 8080, GuestPort: 80, Protocol: "tcp"}},
		{in: "53:53/udp", want: Port{HostPort: 53, GuestPort: 53, Protocol: "udp"}},
		{in: "0.0.0.0:8080:80/tcp", want: Port{HostIP: "0.0.0.0", HostPort: 8080, GuestPort: 80, Protocol: "tcp"}},
		{in: "[::1]:8080:80", want: Port{HostIP: "::1", HostPort: 8080, GuestPort: 80, Protocol: "tcp"}},
		{in: "127.0.0.2:1:65535", want: Port{HostIP: "127.0.0.2", HostPort: 1, GuestPort: 65535, Protocol: "tcp"}},
		{in: "80", wantErr: "wrong number of fields"},
		{in: "1:2:3:4", wantErr: "wrong number of fields"},
		{in: "8080:80/sctp", wantErr: "protocol"},
		{in: "8080:0", wantErr: "1 to 65535"},
		{in: "8080:65536", wantErr: "1 to 65535"},
		{in: "x:80", wantErr: "1 to 65535"},
		{in: "host:8080:80", wantErr: "not an IP"},
		{in: "[::1:8080:80", wantErr: "bracket"},
		{in: "[::1]8080:80", wantErr: "bracket"},
		{in: "::1:8080:80", wantErr: "wrong number of fields"},
		{in: "[fe80::1%eth0]:1:2", wantErr: "not an IP"},
	}
	for _, tc := range tests {
		got, err := ParsePort(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePort(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		// String round-trips.
		again, err := ParsePort(got.String())
		if err != nil || again != got {
			t.Errorf("ParsePort(%q.String() = %q) = %+v, %v; want %+v", tc.in, got.String(), again, err, got)
		}
	}
}

func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"8080:80", "[::1]:1:2/udp", "0.0.0.0:1:2", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePort(s)
		if err != nil {
			return
		}
		again, err := ParsePort(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePort(%q) = %+v; String %q re-parses to %+v, %v", s, p, p.String(), again, err)
		}
	})
}
