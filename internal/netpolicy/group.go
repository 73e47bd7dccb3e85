package netpolicy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Group is a class of addresses. Every valid address belongs to exactly one
// group (see Classify); the zero value, NoGroup, is what an invalid address
// gets and never matches a group rule.
type Group uint8

// Groups, in the order Classify tries them.
const (
	NoGroup   Group = iota
	Host            // the sandbox's gateway addresses, i.e. services on the host itself
	Metadata        // cloud instance metadata: 169.254.169.254, fd00:ec2::254
	Loopback        // 127/8, ::1, and the unspecified addresses 0/8 and ::
	Private         // RFC 1918, CGNAT, msb's address pool, IPv6 ULA
	LinkLocal       // 169.254/16, fe80::/10
	Multicast       // 224/4, ff00::/8
	Reserved        // not routable: 240/4 (with broadcast), documentation nets, IPv6 outside 2000::/3
	Public          // everything else: globally routable unicast
)

var groupNames = [...]string{
	NoGroup:   "none",
	Host:      "host",
	Metadata:  "metadata",
	Loopback:  "loopback",
	Private:   "private",
	LinkLocal: "link-local",
	Multicast: "multicast",
	Reserved:  "reserved",
	Public:    "public",
}

// String returns the group's name as the --net-rule grammar spells it.
func (g Group) String() string {
	if int(g) < len(groupNames) {
		return groupNames[g]
	}
	return fmt.Sprintf("group(%d)", uint8(g))
}

// groupWords are the words ParseGroup accepts, canonical names first so that
// typo suggestions prefer them. "meta" is the reference's spelling.
var groupWords = []string{"public", "private", "loopback", "link-local", "metadata", "multicast", "host", "reserved", "meta"}

// ParseGroup parses a group name: public, private, loopback, link-local
// (or link_local), metadata (or meta), multicast, host or reserved. Case is
// ignored. The error suggests the nearest name for a typo.
func ParseGroup(s string) (Group, error) {
	w := strings.ReplaceAll(strings.ToLower(s), "_", "-")
	switch w {
	case "host":
		return Host, nil
	case "metadata", "meta":
		return Metadata, nil
	case "loopback":
		return Loopback, nil
	case "private":
		return Private, nil
	case "link-local":
		return LinkLocal, nil
	case "multicast":
		return Multicast, nil
	case "reserved":
		return Reserved, nil
	case "public":
		return Public, nil
	}
	return NoGroup, &inputError{
		input: fmt.Sprintf("group %q", s),
		msg:   "unknown group",
		hint:  suggest(w, groupWords, "want one of "+strings.Join(groupWords[:8], ", ")),
	}
}

var (
	metadata4 = netip.MustParseAddr("169.254.169.254")
	metadata6 = netip.MustParseAddr("fd00:ec2::254")
)

// rangeGroup assigns a group to a prefix. The tables below are disjoint, so
// their order does not matter; Host and Metadata, which sit inside other
// ranges, are checked before them.
type rangeGroup struct {
	p netip.Prefix
	g Group
}

var v4Ranges = []rangeGroup{
	// RFC 1122 "this host on this network". Connecting to 0.0.0.0 reaches the
	// connecting host itself, and msb re-dials guest flows from the host, so
	// these are the host's loopback as far as the policy is concerned.
	{netip.MustParsePrefix("0.0.0.0/8"), Loopback},
	{netip.MustParsePrefix("127.0.0.0/8"), Loopback},
	{netip.MustParsePrefix("10.0.0.0/8"), Private},
	{netip.MustParsePrefix("172.16.0.0/12"), Private},
	{netip.MustParsePrefix("192.168.0.0/16"), Private},
	{netip.MustParsePrefix("100.64.0.0/10"), Private}, // RFC 6598 shared (CGNAT) space
	// RFC 2544 benchmarking space, which msb uses as its default sandbox
	// address pool: other sandboxes live here, so it is private, not public.
	{netip.MustParsePrefix("198.18.0.0/15"), Private},
	{netip.MustParsePrefix("169.254.0.0/16"), LinkLocal},
	{netip.MustParsePrefix("224.0.0.0/4"), Multicast},
	// Class E, including the limited broadcast 255.255.255.255: not
	// routable, so never public.
	{netip.MustParsePrefix("240.0.0.0/4"), Reserved},
	// RFC 5737 documentation nets are not routed anywhere.
	{netip.MustParsePrefix("192.0.2.0/24"), Reserved},
	{netip.MustParsePrefix("198.51.100.0/24"), Reserved},
	{netip.MustParsePrefix("203.0.113.0/24"), Reserved},
}

var v6Ranges = []rangeGroup{
	{netip.MustParsePrefix("::/128"), Loopback}, // unspecified: see 0.0.0.0/8
	{netip.MustParsePrefix("::1/128"), Loopback},
	{netip.MustParsePrefix("fc00::/7"), Private},
	{netip.MustParsePrefix("fe80::/10"), LinkLocal},
	{netip.MustParsePrefix("ff00::/8"), Multicast},
	// Inside 2000::/3 but not plain public unicast. 6to4 and Teredo embed
	// an IPv4 address that may be private or metadata, and a relay on the
	// host would carry the flow there, so they are never public.
	{netip.MustParsePrefix("2001:db8::/32"), Reserved}, // RFC 3849 documentation
	{netip.MustParsePrefix("3fff::/20"), Reserved},     // RFC 9637 documentation
	{netip.MustParsePrefix("2002::/16"), Reserved},     // 6to4
	{netip.MustParsePrefix("2001::/32"), Reserved},     // Teredo
}

// globalUnicast6 is the only IPv6 space IANA allocates for global unicast.
// Anything outside it not named above (including NAT64 64:ff9b::/96, the
// deprecated site-local fec0::/10 and IPv4-compatible ::a.b.c.d) is Reserved.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Classify returns the group of a: Host if a is one of gateways, else the
// first of Metadata, Loopback, Private, LinkLocal, Multicast, Reserved and
// Public whose ranges hold it. IPv4-mapped IPv6 addresses are unmapped and
// zones dropped first, on a and on gateways. An invalid a is NoGroup.
func Classify(a netip.Addr, gateways []netip.Addr) Group {
	if !a.IsValid() {
		return NoGroup
	}
	a = canonical(a)
	for _, gw := range gateways {
		if canonical(gw) == a {
			return Host
		}
	}
	return classify(a)
}

// classify is Classify without gateways; a is canonical.
func classify(a netip.Addr) Group {
	if a == metadata4 || a == metadata6 {
		return Metadata
	}
	if a.Is4() {
		for _, r := range v4Ranges {
			if r.p.Contains(a) {
				return r.g
			}
		}
		return Public
	}
	for _, r := range v6Ranges {
		if r.p.Contains(a) {
			return r.g
		}
	}
	if globalUnicast6.Contains(a) {
		return Public
	}
	return Reserved
}

// canonical unmaps a and drops its zone, the form every comparison uses.
func canonical(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
