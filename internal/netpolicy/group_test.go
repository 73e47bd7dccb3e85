package netpolicy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestClassifyBoundaries checks the first and last address of every range and
// the neighbours just outside it.
func TestClassifyBoundaries(t *testing.T) {
	tests := []struct {
		addr string
		want Group
	}{
		// 0/8: the unspecified "this host" range is loopback.
		{"0.0.0.0", Loopback}, {"0.255.255.255", Loopback}, {"1.0.0.0", Public},
		{"9.255.255.255", Public}, {"10.0.0.0", Private}, {"10.255.255.255", Private}, {"11.0.0.0", Public},
		{"100.63.255.255", Public}, {"100.64.0.0", Private}, {"100.127.255.255", Private}, {"100.128.0.0", Public},
		{"126.255.255.255", Public}, {"127.0.0.0", Loopback}, {"127.255.255.255", Loopback}, {"128.0.0.0", Public},
		{"169.253.255.255", Public}, {"169.254.0.0", LinkLocal}, {"169.254.255.255", LinkLocal}, {"169.255.0.0", Public},
		{"169.254.169.253", LinkLocal}, {"169.254.169.254", Metadata}, {"169.254.169.255", LinkLocal},
		{"172.15.255.255", Public}, {"172.16.0.0", Private}, {"172.31.255.255", Private}, {"172.32.0.0", Public},
		{"192.0.1.255", Public}, {"192.0.2.0", Reserved}, {"192.0.2.255", Reserved}, {"192.0.3.0", Public},
		{"192.167.255.255", Public}, {"192.168.0.0", Private}, {"192.168.255.255", Private}, {"192.169.0.0", Public},
		{"198.17.255.255", Public}, {"198.18.0.0", Private}, {"198.19.255.255", Private}, {"198.20.0.0", Public},
		{"198.51.99.255", Public}, {"198.51.100.0", Reserved}, {"198.51.100.255", Reserved}, {"198.51.101.0", Public},
		{"203.0.112.255", Public}, {"203.0.113.0", Reserved}, {"203.0.113.255", Reserved}, {"203.0.114.0", Public},
		{"223.255.255.255", Public}, {"224.0.0.0", Multicast}, {"239.255.255.255", Multicast},
		{"240.0.0.0", Reserved}, {"255.255.255.254", Reserved}, {"255.255.255.255", Reserved},
		{"8.8.8.8", Public}, {"1.1.1.1", Public},

		// IPv6.
		{"::", Loopback}, {"::1", Loopback}, {"::2", Reserved},
		{"::127.0.0.1", Reserved}, // IPv4-compatible (deprecated), not mapped
		{"64:ff9b::a9fe:a9fe", Reserved},
		{"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"2000::", Public},
		{"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public}, {"2001::", Reserved},
		{"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"2001:1::", Public},
		{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", Public}, {"2001:db8::", Reserved},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"2001:db9::", Public},
		{"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public}, {"2002::", Reserved},
		{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"2003::", Public},
		{"2606:4700:4700::1111", Public},
		{"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public}, {"3fff::", Reserved},
		{"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"3fff:1000::", Public},
		{"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public}, {"4000::", Reserved},
		{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"fc00::", Private},
		{"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private}, {"fe00::", Reserved},
		{"fd00:ec2::253", Private}, {"fd00:ec2::254", Metadata}, {"fd00:ec2::255", Private},
		{"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"fe80::", LinkLocal},
		{"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal}, {"fec0::", Reserved},
		{"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved}, {"ff00::", Multicast},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Multicast},
		{"fe80::1%eth0", LinkLocal},

		// IPv4-mapped IPv6 is classified as the IPv4 address it maps.
		{"::ffff:127.0.0.1", Loopback}, {"::ffff:169.254.169.254", Metadata}, {"::ffff:10.0.0.1", Private},
		{"::ffff:8.8.8.8", Public}, {"::ffff:0.0.0.0", Loopback}, {"::ffff:255.255.255.255", Reserved},
		{"::fffe:808:808", Reserved}, // just below the mapped range
	}
	for _, tc := range tests {
		a := netip.MustParseAddr(tc.addr)
		if got := Classify(a, nil); got != tc.want {
			t.Errorf("Classify(%s) = %s; want %s", tc.addr, got, tc.want)
		}
	}
}

// TestClassifyRangeEnds checks the tables themselves: the first and last
// address of every range classify as its group.
func TestClassifyRangeEnds(t *testing.T) {
	for _, r := range append(append([]rangeGroup{}, v4Ranges...), v6Ranges...) {
		first := r.p.Addr()
		last := lastAddr(r.p)
		for _, a := range []netip.Addr{first, last} {
			if got := Classify(a, nil); got != r.g {
				t.Errorf("Classify(%s) = %s; want %s (range %s)", a, got, r.g, r.p)
			}
		}
	}
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestClassifyHost(t *testing.T) {
	gws := []netip.Addr{
		netip.MustParseAddr("100.96.0.1"),
		netip.MustParseAddr("fd42:6d73:62:1::1"),
		netip.MustParseAddr("::ffff:198.18.0.1"), // a mapped gateway is unmapped too
	}
	tests := []struct {
		addr string
		want Group
	}{
		{"100.96.0.1", Host}, {"::ffff:100.96.0.1", Host}, {"100.96.0.0", Private}, {"100.96.0.2", Private},
		{"fd42:6d73:62:1::1", Host}, {"fd42:6d73:62:1::2", Private}, {"fd42:6d73:62:1::", Private},
		{"198.18.0.1", Host}, {"198.18.0.2", Private},
	}
	for _, tc := range tests {
		if got := Classify(netip.MustParseAddr(tc.addr), gws); got != tc.want {
			t.Errorf("Classify(%s, gateways) = %s; want %s", tc.addr, got, tc.want)
		}
	}
	if got := Classify(netip.Addr{}, gws); got != NoGroup {
		t.Errorf("Classify(invalid) = %s; want none", got)
	}
	// Host comes first: a gateway that is also a metadata address is host.
	if got := Classify(metadata4, []netip.Addr{metadata4}); got != Host {
		t.Errorf("Classify(metadata as gateway) = %s; want host", got)
	}
}

func TestParseGroup(t *testing.T) {
	for g := Host; g <= Public; g++ {
		got, err := ParseGroup(g.String())
		if err != nil || got != g {
			t.Errorf("ParseGroup(%q) = %v, %v; want %v", g.String(), got, err, g)
		}
	}
	for in, want := range map[string]Group{"meta": Metadata, "LINK_LOCAL": LinkLocal, "Public": Public} {
		if got, err := ParseGroup(in); err != nil || got != want {
			t.Errorf("ParseGroup(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	_, err := ParseGroup("privat")
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `did you mean "private"?`) {
		t.Errorf("ParseGroup(privat) error = %v; want a suggestion of private", err)
	}
	if _, err := ParseGroup("none"); err == nil {
		t.Error("ParseGroup(none) succeeded; NoGroup must not be nameable")
	}
}
