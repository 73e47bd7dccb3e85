package netpolicy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

var testGateways = []netip.Addr{netip.MustParseAddr("100.96.0.1"), netip.MustParseAddr("fd42:6d73:62:1::1")}

// mustPolicy builds a Policy from --net-rule tokens on top of defaults.
func mustPolicy(t testing.TB, egress, ingress Action, tokens ...string) *Policy {
	t.Helper()
	var rules []Rule
	for _, tok := range tokens {
		rs, err := ParseRule(tok)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, rs...)
	}
	p, err := New(Config{DefaultEgress: egress, DefaultIngress: ingress, Rules: rules, Gateways: testGateways})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func out(dst, proto string, port uint16, names ...string) Flow {
	return Flow{Egress: true, Dst: netip.MustParseAddr(dst), Protocol: proto, Port: port, Names: names}
}

func in(src, proto string, port uint16) Flow {
	return Flow{Egress: false, Dst: netip.MustParseAddr(src), Protocol: proto, Port: port}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name     string
		egress   Action
		ingress  Action
		rules    []string
		flow     Flow
		want     Action
		wantRule int
	}{
		{"first match wins: deny before allow", Deny, Allow, []string{"deny@10.0.0.1", "allow@10.0.0.0/8"}, out("10.0.0.1", "tcp", 80), Deny, 0},
		{"first match wins: neighbour falls through", Deny, Allow, []string{"deny@10.0.0.1", "allow@10.0.0.0/8"}, out("10.0.0.2", "tcp", 80), Allow, 1},
		{"first match wins: allow before deny", Deny, Allow, []string{"allow@10.0.0.1", "deny@any"}, out("10.0.0.1", "udp", 53), Allow, 0},
		{"egress default deny", Deny, Allow, nil, out("8.8.8.8", "tcp", 443), Deny, DefaultRule},
		{"egress default allow", Allow, Deny, nil, out("8.8.8.8", "tcp", 443), Allow, DefaultRule},
		{"ingress default allow", Deny, Allow, nil, in("8.8.8.8", "tcp", 8080), Allow, DefaultRule},
		{"ingress default deny", Allow, Deny, nil, in("8.8.8.8", "tcp", 8080), Deny, DefaultRule},
		{"egress rule ignores ingress", Deny, Deny, []string{"allow@any"}, in("8.8.8.8", "tcp", 80), Deny, DefaultRule},
		{"ingress rule ignores egress", Deny, Deny, []string{"allow:ingress@any"}, out("8.8.8.8", "tcp", 80), Deny, DefaultRule},
		{"any direction: egress", Deny, Deny, []string{"allow:any@private"}, out("192.168.1.1", "tcp", 80), Allow, 0},
		{"any direction: ingress", Deny, Deny, []string{"allow:any@private"}, in("192.168.1.1", "tcp", 80), Allow, 0},

		// Domain rules: exactly the resolved address.
		{"domain allows resolved IP", Deny, Allow, []string{"allow@api.example.com"}, out("93.184.216.34", "tcp", 443, "api.example.com"), Allow, 0},
		{"domain name compared case-insensitively", Deny, Allow, []string{"allow@api.example.com"}, out("93.184.216.34", "tcp", 443, "API.Example.com."), Allow, 0},
		{"domain never matches an unresolved IP", Deny, Allow, []string{"allow@api.example.com"}, out("93.184.216.34", "tcp", 443), Deny, DefaultRule},
		{"domain does not match another name", Deny, Allow, []string{"allow@api.example.com"}, out("93.184.216.35", "tcp", 443, "cdn.example.net"), Deny, DefaultRule},
		{"domain does not match a subdomain", Deny, Allow, []string{"allow@example.com"}, out("93.184.216.34", "tcp", 443, "www.example.com"), Deny, DefaultRule},
		{"domain matches any name of the chain", Deny, Allow, []string{"allow@api.example.com"}, out("93.184.216.34", "tcp", 443, "edge.cdn.net", "api.example.com"), Allow, 0},
		{"domain matches past four names", Deny, Allow, []string{"allow@api.example.com"}, out("93.184.216.34", "tcp", 443, "a.cdn", "", ".", "b.cdn", "c.cdn", "d.cdn", "API.example.com."), Allow, 0},
		{"suffix matches past four names", Deny, Allow, []string{"allow@suffix=example.com"}, out("93.184.216.34", "tcp", 443, "a.cdn", "b.cdn", "c.cdn", "d.cdn", "e.cdn", "www.Example.com"), Allow, 0},
		{"empty names match nothing", Deny, Allow, []string{"allow@suffix=example.com"}, out("93.184.216.34", "tcp", 443, "", "."), Deny, DefaultRule},
		{"domain with port: other port denied", Deny, Allow, []string{"allow@api.example.com:tcp:443"}, out("93.184.216.34", "tcp", 80, "api.example.com"), Deny, DefaultRule},
		{"domain deny beats public allow", Deny, Allow, []string{"deny@evil.example", "allow@public"}, out("8.8.4.4", "tcp", 443, "evil.example"), Deny, 0},

		// Suffix rules.
		{"suffix matches itself", Allow, Allow, []string{"deny@suffix=example.com"}, out("8.8.8.8", "tcp", 443, "example.com"), Deny, 0},
		{"suffix matches subdomain", Allow, Allow, []string{"deny@suffix=example.com"}, out("8.8.8.8", "tcp", 443, "a.b.example.com"), Deny, 0},
		{"suffix boundary: badexample.com", Allow, Allow, []string{"deny@suffix=example.com"}, out("8.8.8.8", "tcp", 443, "badexample.com"), Allow, DefaultRule},
		{"suffix boundary: example.com.evil", Allow, Allow, []string{"deny@suffix=example.com"}, out("8.8.8.8", "tcp", 443, "example.com.evil"), Allow, DefaultRule},
		{"suffix needs a name", Allow, Allow, []string{"deny@suffix=example.com"}, out("8.8.8.8", "tcp", 443), Allow, DefaultRule},

		// CIDR and mapped addresses.
		{"IP allow applies to mapped peer", Deny, Allow, []string{"allow@203.0.114.5"}, out("::ffff:203.0.114.5", "tcp", 22), Allow, 0},
		{"IP allow: neighbour denied", Deny, Allow, []string{"allow@203.0.114.5"}, out("203.0.114.6", "tcp", 22), Deny, DefaultRule},
		{"IPv6 CIDR", Deny, Allow, []string{"allow@[2001:4860::/32]"}, out("2001:4860:4860::8888", "udp", 53), Allow, 0},
		{"IPv6 CIDR: outside", Deny, Allow, []string{"allow@[2001:4860::/32]"}, out("2001:4861::1", "udp", 53), Deny, DefaultRule},
		{"IPv4 CIDR does not match IPv6", Deny, Allow, []string{"allow@0.0.0.0/0"}, out("2606:4700::1", "tcp", 443), Deny, DefaultRule},

		// Protocols and ports.
		{"protocol mismatch", Deny, Allow, []string{"allow@public:udp"}, out("8.8.8.8", "tcp", 53), Deny, DefaultRule},
		{"port range low end", Deny, Allow, []string{"allow@public:tcp:8000-8080"}, out("8.8.8.8", "tcp", 8000), Allow, 0},
		{"port range high end", Deny, Allow, []string{"allow@public:tcp:8000-8080"}, out("8.8.8.8", "tcp", 8080), Allow, 0},
		{"port range below", Deny, Allow, []string{"allow@public:tcp:8000-8080"}, out("8.8.8.8", "tcp", 7999), Deny, DefaultRule},
		{"port range above", Deny, Allow, []string{"allow@public:tcp:8000-8080"}, out("8.8.8.8", "tcp", 8081), Deny, DefaultRule},
		{"tcp port rule does not match udp", Deny, Allow, []string{"allow@public:tcp:53"}, out("8.8.8.8", "udp", 53), Deny, DefaultRule},
		{"ICMPv4 allowed", Deny, Allow, []string{"allow@public:icmpv4"}, out("8.8.8.8", "icmpv4", 0), Allow, 0},
		{"ICMPv4 rule does not match ICMPv6", Deny, Allow, []string{"allow@public:icmpv4"}, out("2606:4700::1", "icmpv6", 0), Deny, DefaultRule},
		{"ICMP under a protocol-less rule", Deny, Allow, []string{"allow@public"}, out("2606:4700::1", "icmpv6", 0), Allow, 0},
		{"ingress port is the guest port", Allow, Deny, []string{"allow:ingress@any:tcp:8080"}, in("203.0.114.9", "tcp", 8080), Allow, 0},

		// Groups.
		{"host group via gateway", Deny, Allow, []string{"allow@host"}, out("100.96.0.1", "tcp", 8080), Allow, 0},
		{"host group via mapped gateway", Deny, Allow, []string{"allow@host"}, out("::ffff:100.96.0.1", "tcp", 8080), Allow, 0},
		{"gateway neighbour is not host", Deny, Allow, []string{"allow@host"}, out("100.96.0.2", "tcp", 8080), Deny, DefaultRule},
		{"IPv6 gateway is host", Deny, Allow, []string{"allow@host"}, out("fd42:6d73:62:1::1", "tcp", 80), Allow, 0},
		{"gateway CIDR deny beats host allow", Deny, Allow, []string{"deny@100.96.0.1/32", "allow@host"}, out("100.96.0.1", "tcp", 80), Deny, 0},
		{"public does not include private", Deny, Allow, []string{"allow@public"}, out("10.1.2.3", "tcp", 80), Deny, DefaultRule},
		{"public does not include metadata", Deny, Allow, []string{"allow@public"}, out("169.254.169.254", "tcp", 80), Deny, DefaultRule},
		{"public does not include broadcast", Deny, Allow, []string{"allow@public"}, out("255.255.255.255", "udp", 67), Deny, DefaultRule},
		{"metadata group", Allow, Allow, []string{"deny@meta"}, out("fd00:ec2::254", "tcp", 80), Deny, 0},

		// Invalid flows.
		{"unknown protocol denied even under allow-all", Allow, Allow, nil, out("8.8.8.8", "sctp", 80), Deny, InvalidFlow},
		{"invalid address denied", Allow, Allow, nil, Flow{Egress: true, Protocol: "tcp", Port: 80}, Deny, InvalidFlow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, tc.egress, tc.ingress, tc.rules...)
			got, v := p.Decide(tc.flow)
			if got != tc.want || v.Rule != tc.wantRule {
				t.Errorf("Decide(%+v) = %s, %s; want %s by rule %d", tc.flow, got, v, tc.want, tc.wantRule)
			}
			if p.AllowFlow(tc.flow) != (tc.want == Allow) {
				t.Errorf("AllowFlow(%+v) disagrees with Decide", tc.flow)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	p := mustPolicy(t, Deny, Allow, "allow@public")
	_, v := p.Decide(out("8.8.8.8", "tcp", 443))
	if want := (Verdict{Rule: 0, Egress: true, Group: Public}); v != want {
		t.Errorf("verdict = %+v; want %+v", v, want)
	}
	tests := []struct {
		v    Verdict
		want string
	}{
		{Verdict{Rule: 3, Egress: true, Group: Public}, "rule 3 (group public)"},
		{Verdict{Rule: DefaultRule, Egress: true, Group: Private}, "default egress (group private)"},
		{Verdict{Rule: DefaultRule, Group: Host}, "default ingress (group host)"},
		{Verdict{Rule: InvalidFlow, Egress: true}, "invalid egress flow"},
	}
	for _, tc := range tests {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("%+v.String() = %q; want %q", tc.v, got, tc.want)
		}
	}
}

func TestAllowName(t *testing.T) {
	tests := []struct {
		name  string
		rules []string
		query string
		want  bool
	}{
		{"no rules", nil, "example.com", true},
		{"deny domain", []string{"deny@example.com"}, "example.com", false},
		{"deny domain, trailing dot and case", []string{"deny@example.com"}, "EXAMPLE.com.", false},
		{"deny domain leaves subdomain", []string{"deny@example.com"}, "www.example.com", true},
		{"deny suffix", []string{"deny@suffix=example.com"}, "a.example.com", false},
		{"deny suffix boundary", []string{"deny@suffix=example.com"}, "badexample.com", true},
		{"allow-list does not refuse others", []string{"allow@api.example.com"}, "other.org", true},
		{"deny on one port leaves the name", []string{"deny@example.com:tcp:25"}, "example.com", true},
		{"ingress deny is not about names", []string{"deny:ingress@any", "deny:egress@any"}, "example.com", true},
		{"any-direction deny refuses", []string{"deny:any@suffix=example.com"}, "example.com", false},
		{"earlier allow wins over deny suffix", []string{"allow@api.example.com", "deny@suffix=example.com"}, "api.example.com", true},
		{"deny suffix after allow still refuses siblings", []string{"allow@api.example.com", "deny@suffix=example.com"}, "www.example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, Deny, Allow, tc.rules...)
			if got := p.AllowName(tc.query); got != tc.want {
				t.Errorf("AllowName(%q) = %v; want %v", tc.query, got, tc.want)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"bad default", Config{DefaultEgress: 7}, "default egress"},
		{"invalid gateway", Config{Gateways: []netip.Addr{{}}}, "gateway 0"},
		{"non-canonical CIDR", Config{Rules: []Rule{{Destination: pfx("10.0.0.1/8")}}}, "did you mean 10.0.0.0/8?"},
		{"mapped CIDR", Config{Rules: []Rule{{Destination: pfx("::ffff:10.0.0.0/104")}}}, "IPv4-mapped"},
		{"invalid prefix", Config{Rules: []Rule{{Destination: CIDR(netip.Prefix{})}}}, "invalid prefix"},
		{"bad domain", Config{Rules: []Rule{{Destination: Domain("a b")}}}, "invalid character"},
		{"empty suffix", Config{Rules: []Rule{{Destination: Suffix(".")}}}, "empty domain name"},
		{"no group", Config{Rules: []Rule{{Destination: InGroup(NoGroup)}}}, "unknown group"},
		{"ICMP ingress", Config{Rules: []Rule{{Direction: Ingress, Protocols: []Protocol{ICMPv4}}}}, "egress only"},
		{"ports without protocol", Config{Rules: []Rule{{Ports: []PortRange{{80, 80}}}}}, "ports need a protocol"},
		{"ports on ICMP", Config{Rules: []Rule{{Protocols: []Protocol{TCP, ICMPv6}, Ports: []PortRange{{80, 80}}}}}, "icmpv6 has no ports"},
		{"port zero", Config{Rules: []Rule{{Protocols: tcp, Ports: []PortRange{{0, 80}}}}}, "invalid port range 0-80"},
		{"backwards range", Config{Rules: []Rule{{Protocols: tcp, Ports: []PortRange{{90, 80}}}}}, "invalid port range 90-80"},
		{"bad direction", Config{Rules: []Rule{{Direction: 9}}}, "unknown direction"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("New() error = %v; want ErrInvalid containing %q", err, tc.err)
			}
		})
	}

	// New normalizes names and copies slices.
	protos := []Protocol{TCP}
	p, err := New(Config{Rules: []Rule{{Destination: Domain("Example.COM."), Protocols: protos}}})
	if err != nil {
		t.Fatal(err)
	}
	protos[0] = UDP
	if got := p.Rules()[0]; got.Destination.Name != "example.com" || got.Protocols[0] != TCP {
		t.Errorf("rule = %+v; want name example.com and protocol tcp kept", got)
	}
}

func TestPresets(t *testing.T) {
	probes := []struct {
		name string
		flow Flow
	}{
		{"public", out("8.8.8.8", "tcp", 443)},
		{"private", out("10.0.0.1", "tcp", 443)},
		{"loopback", out("127.0.0.1", "tcp", 443)},
		{"link-local", out("169.254.1.1", "tcp", 443)},
		{"metadata", out("169.254.169.254", "tcp", 80)},
		{"host", out("100.96.0.1", "tcp", 80)},
		{"multicast", out("239.1.1.1", "udp", 5353)},
		{"reserved", out("240.0.0.1", "tcp", 80)},
		{"ingress", in("8.8.8.8", "tcp", 8080)},
	}
	want := map[string]string{ // one letter per probe: a = allow, d = deny
		PresetPublicOnly: "addddddda",
		PresetNone:       "ddddddddd",
		PresetAllowAll:   "aaaaaaaaa",
		PresetNonLocal:   "aaddddada",
	}
	for name, w := range want {
		for _, spelling := range []string{name, strings.ReplaceAll(name, "-", "_")} {
			p, err := Preset(spelling, testGateways)
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for _, pr := range probes {
				if p.AllowFlow(pr.flow) {
					got.WriteByte('a')
				} else {
					got.WriteByte('d')
				}
			}
			if got.String() != w {
				t.Errorf("preset %s over %v = %s; want %s", spelling, probeNames(probes), got.String(), w)
			}
		}
	}
	if _, err := Preset("public_onyl", nil); err == nil || !strings.Contains(err.Error(), `did you mean "public-only"?`) {
		t.Errorf("Preset(public_onyl) error = %v; want a suggestion", err)
	}
}

func probeNames[T any](ps []struct {
	name string
	flow T
}) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.name
	}
	return s
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // Policy.String without the gateways
		err  string
	}{
		{"nothing is public-only", Options{}, "egress deny, ingress allow; rules: allow@public", ""},
		{"deny-domain only allows other egress", Options{DenyDomains: []string{"evil.example"}},
			"egress allow, ingress allow; rules: deny@evil.example", ""},
		{"deny-suffix only allows other egress", Options{DenyDomainSuffixes: []string{"evil.example"}},
			"egress allow, ingress allow; rules: deny@suffix=evil.example", ""},
		{"rules make an allow-list under public-only defaults", Options{Rules: []string{"allow@api.example.com:tcp:443"}},
			"egress deny, ingress allow; rules: allow@api.example.com:tcp:443", ""},
		{"deny-domain goes before rules", Options{Rules: []string{"allow@public"}, DenyDomains: []string{"evil.example"}},
			"egress deny, ingress allow; rules: deny@evil.example, allow@public", ""},
		{"deny-domain with explicit default keeps it", Options{DefaultEgress: "deny", DenyDomains: []string{"evil.example"}},
			"egress deny, ingress allow; rules: deny@evil.example, allow@public", ""},
		{"explicit preset with deny-domain", Options{Preset: "none", DenyDomains: []string{"evil.example"}},
			"egress deny, ingress deny; rules: deny@evil.example", ""},
		{"preset rules go last", Options{Preset: "non-local", Rules: []string{"allow@host:tcp:5432"}},
			"egress allow, ingress allow; rules: allow@host:tcp:5432, deny@loopback, deny@link-local, deny@metadata, deny@host, deny@reserved", ""},
		{"default flags override", Options{DefaultEgress: "ALLOW", DefaultIngress: "deny"},
			"egress allow, ingress deny; rules: allow@public", ""},
		{"no-net alone", Options{NoNet: true}, "egress deny, ingress deny; no rules", ""},
		{"no-net with rules", Options{NoNet: true, Rules: []string{"allow@public"}}, "", "--no-net: cannot be combined with --net-rule; drop --no-net"},
		{"no-net with deny-domain", Options{NoNet: true, DenyDomains: []string{"x.example"}}, "", "cannot be combined with --deny-domain"},
		{"no-net with defaults", Options{NoNet: true, DefaultEgress: "allow", Preset: "none"}, "", "a network preset, --net-default-egress"},
		{"bad default", Options{DefaultIngress: "alow"}, "", `--net-default-ingress "alow": unknown action "alow"; did you mean "allow"?`},
		{"bad preset", Options{Preset: "allow_al"}, "", `did you mean "allow-all"?`},
		{"bad rule", Options{Rules: []string{"allow@public", "alow@x.com"}}, "", `net rule "alow@x.com"`},
		{"bad deny-domain", Options{DenyDomains: []string{"*.example.com"}}, "", `--deny-domain "*.example.com"`},
		{"bad deny suffix", Options{DenyDomainSuffixes: []string{"ex ample.com"}}, "", `--deny-domain-suffix "ex ample.com"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(tc.o, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Build(%+v) error = %v; want ErrInvalid containing %q", tc.o, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build(%+v): %v", tc.o, err)
			}
			if got := p.String(); got != tc.want {
				t.Errorf("Build(%+v) = %q; want %q", tc.o, got, tc.want)
			}
		})
	}
}

func TestBuildDenyDomainOnlyStillDeniesDomain(t *testing.T) {
	p, err := Build(Options{DenyDomains: []string{"evil.example"}}, testGateways)
	if err != nil {
		t.Fatal(err)
	}
	if p.AllowName("evil.example") || p.AllowFlow(out("8.8.8.8", "tcp", 443, "evil.example")) {
		t.Error("denied domain allowed")
	}
	if !p.AllowName("good.example") || !p.AllowFlow(out("8.8.8.8", "tcp", 443, "good.example")) {
		t.Error("other domain denied")
	}
}

func TestDescribe(t *testing.T) {
	p := mustPolicy(t, Deny, Allow, "deny@suffix=evil.example", "allow@[2001:db8::/32]:tcp:443", "allow@public")
	wantS := "egress deny, ingress allow; rules: deny@suffix=evil.example, allow@[2001:db8::/32]:tcp:443, allow@public; host 100.96.0.1 fd42:6d73:62:1::1"
	if got := p.String(); got != wantS {
		t.Errorf("String() = %q; want %q", got, wantS)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	wantJ := `{"default_egress":"deny","default_ingress":"allow","rules":["deny@suffix=evil.example","allow@[2001:db8::/32]:tcp:443","allow@public"],"gateways":["100.96.0.1","fd42:6d73:62:1::1"]}`
	if string(b) != wantJ {
		t.Errorf("MarshalJSON = %s; want %s", b, wantJ)
	}
	// The JSON's rules rebuild the same policy.
	var j policyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	again, err := Build(Options{Rules: j.Rules, DefaultEgress: j.DefaultEgress, DefaultIngress: j.DefaultIngress}, testGateways)
	if err != nil || again.String() != p.String() {
		t.Errorf("rebuilt %v, %v; want %v", again, err, p)
	}
}

func FuzzDecide(f *testing.F) {
	f.Add("allow@public,deny@10.0.0.0/8:tcp:22", true, []byte{8, 8, 8, 8}, "tcp", uint16(443), "example.com")
	f.Add("deny@suffix=example.com,allow@any", true, []byte{93, 184, 216, 34}, "udp", uint16(53), "a.example.com")
	f.Add("allow:ingress@[fd00::/8]:udp:1-100", false, netip.MustParseAddr("fd00::1").AsSlice(), "udp", uint16(50), "")
	f.Add("allow@host:icmpv4", true, []byte{100, 96, 0, 1}, "icmpv4", uint16(0), "")
	f.Add("allow@1.2.3.4", true, netip.MustParseAddr("::ffff:1.2.3.4").AsSlice(), "tcp", uint16(1), "")
	f.Fuzz(func(t *testing.T, token string, egress bool, addr []byte, proto string, port uint16, name string) {
		rules, err := ParseRule(token)
		if err != nil {
			return
		}
		p, err := New(Config{DefaultEgress: Deny, DefaultIngress: Allow, Rules: rules, Gateways: testGateways})
		if err != nil {
			t.Fatalf("New(ParseRule(%q)): %v", token, err)
		}
		dst, _ := netip.AddrFromSlice(addr)
		var names []string
		if name != "" {
			names = []string{name}
		}
		f := Flow{Egress: egress, Dst: dst, Protocol: proto, Port: port, Names: names}
		a, v := p.Decide(f)
		if a != Allow && a != Deny {
			t.Fatalf("Decide(%+v) = %v", f, a)
		}
		switch {
		case v.Rule >= 0:
			if v.Rule >= len(rules) || rules[v.Rule].Action != a {
				t.Fatalf("Decide(%+v) = %s by rule %d of %v", f, a, v.Rule, rules)
			}
		case v.Rule == DefaultRule:
			if want := map[bool]Action{true: Deny, false: Allow}[egress]; a != want {
				t.Fatalf("Decide(%+v) default = %s; want %s", f, a, want)
			}
		case v.Rule == InvalidFlow:
			if a != Deny {
				t.Fatalf("invalid flow %+v allowed", f)
			}
		default:
			t.Fatalf("verdict rule %d", v.Rule)
		}
		if dst.IsValid() && v.Rule != InvalidFlow && v.Group != Classify(dst, testGateways) {
			t.Fatalf("verdict group %s; Classify says %s", v.Group, Classify(dst, testGateways))
		}
		// A mapped spelling of an IPv4 peer decides the same.
		if dst.Is4() {
			f2 := f
			f2.Dst = netip.AddrFrom16(dst.As16())
			if a2, v2 := p.Decide(f2); a2 != a || v2 != v {
				t.Fatalf("Decide(mapped %+v) = %s %s; want %s %s", f2, a2, v2, a, v)
			}
		}
		// Domain rules never decide for a flow without names.
		f.Names = nil
		if _, v := p.Decide(f); v.Rule >= 0 {
			if k := rules[v.Rule].Destination.Kind; k == DestDomain || k == DestSuffix {
				t.Fatalf("name rule %d decided a flow without names", v.Rule)
			}
		}
		p.AllowName(name)
	})
}

func BenchmarkDecide(b *testing.B) {
	// 50 rules, most of which a public flow must walk past.
	var tokens []string
	for i := range 20 {
		tokens = append(tokens, fmt.Sprintf("deny@10.%d.0.0/16:tcp:%d", i, 1000+i))
		tokens = append(tokens, fmt.Sprintf("allow@svc%d.example.com:tcp:443", i))
	}
	for i := range 9 {
		tokens = append(tokens, fmt.Sprintf("deny@suffix=bad%d.example", i))
	}
	tokens = append(tokens, "allow@public:tcp:443")
	p := mustPolicy(b, Deny, Allow, tokens...)
	if n := len(p.Rules()); n != 50 {
		b.Fatalf("%d rules; want 50", n)
	}
	flows := []struct {
		name string
		f    Flow
	}{
		{"last-rule", out("8.8.8.8", "tcp", 443, "www.google.com", "google.com")},
		{"default", out("10.200.0.1", "udp", 53)},
		{"first-rule", out("10.0.0.1", "tcp", 1000)},
	}
	for _, fl := range flows {
		b.Run(fl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(fl.f)
			}
		})
	}
}
