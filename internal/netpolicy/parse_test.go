package netpolicy

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// rule builds a Rule for test tables.
func rule(a Action, d Direction, dst Destination, protos []Protocol, ports ...PortRange) Rule {
	var ps []PortRange
	if len(ports) > 0 {
		ps = ports
	}
	return Rule{Direction: d, Destination: dst, Protocols: protos, Ports: ps, Action: a}
}

func pfx(s string) Destination { return CIDR(netip.MustParsePrefix(s)) }

var (
	tcp = []Protocol{TCP}
	udp = []Protocol{UDP}
)

// grammarTests mirror the reference's net-rule grammar tests (§12, ×35)
// and add msb's own edge cases. want is nil when err is set; err is a
// substring of the error message.
var grammarTests = []struct {
	name  string
	token string
	want  []Rule
	err   string
}{
	// Valid.
	{"default egress", "allow@public", []Rule{rule(Allow, Egress, InGroup(Public), nil)}, ""},
	{"explicit egress", "deny:egress@private", []Rule{rule(Deny, Egress, InGroup(Private), nil)}, ""},
	{"ingress", "allow:ingress@any", []Rule{rule(Allow, Ingress, AnyDest(), nil)}, ""},
	{"any direction", "deny:any@10.0.0.0/8", []Rule{rule(Deny, AnyDirection, pfx("10.0.0.0/8"), nil)}, ""},
	{"proto only", "allow@public:udp", []Rule{rule(Allow, Egress, InGroup(Public), udp)}, ""},
	{"proto and port", "allow@public:tcp:443", []Rule{rule(Allow, Egress, InGroup(Public), tcp, PortRange{443, 443})}, ""},
	{"port range", "allow@any:tcp:8000-8080", []Rule{rule(Allow, Egress, AnyDest(), tcp, PortRange{8000, 8080})}, ""},
	{"full port range", "allow@any:udp:1-65535", []Rule{rule(Allow, Egress, AnyDest(), udp, PortRange{1, 65535})}, ""},
	{"IPv4 becomes /32", "allow@192.0.2.7", []Rule{rule(Allow, Egress, pfx("192.0.2.7/32"), nil)}, ""},
	{"IPv4 CIDR", "deny@172.16.0.0/12:tcp:22", []Rule{rule(Deny, Egress, pfx("172.16.0.0/12"), tcp, PortRange{22, 22})}, ""},
	{"bracketed IPv6 becomes /128", "allow@[2001:db8::1]", []Rule{rule(Allow, Egress, pfx("2001:db8::1/128"), nil)}, ""},
	{"bracketed IPv6 CIDR", "deny@[fd00::/8]:udp:53", []Rule{rule(Deny, Egress, pfx("fd00::/8"), udp, PortRange{53, 53})}, ""},
	{"bracketed IPv6 loopback", "deny@[::1]", []Rule{rule(Deny, Egress, pfx("::1/128"), nil)}, ""},
	{"domain auto-detected", "allow@api.example.com:tcp:443", []Rule{rule(Allow, Egress, Domain("api.example.com"), tcp, PortRange{443, 443})}, ""},
	{"domain lowercased, trailing dot dropped", "allow@Example.COM.", []Rule{rule(Allow, Egress, Domain("example.com"), nil)}, ""},
	{"domain=", "deny@domain=localhost", []Rule{rule(Deny, Egress, Domain("localhost"), nil)}, ""},
	{"suffix=", "deny@suffix=example.com", []Rule{rule(Deny, Egress, Suffix("example.com"), nil)}, ""},
	{"every group", "allow@loopback,allow@link-local,allow@meta,allow@metadata,allow@multicast,allow@host",
		[]Rule{
			rule(Allow, Egress, InGroup(Loopback), nil), rule(Allow, Egress, InGroup(LinkLocal), nil),
			rule(Allow, Egress, InGroup(Metadata), nil), rule(Allow, Egress, InGroup(Metadata), nil),
			rule(Allow, Egress, InGroup(Multicast), nil), rule(Allow, Egress, InGroup(Host), nil),
		}, ""},
	{"list keeps order", "deny@10.0.0.1, allow@10.0.0.0/8", []Rule{
		rule(Deny, Egress, pfx("10.0.0.1/32"), nil), rule(Allow, Egress, pfx("10.0.0.0/8"), nil)}, ""},
	{"ICMP egress", "allow@public:icmpv4,allow:egress@public:icmpv6", []Rule{
		rule(Allow, Egress, InGroup(Public), []Protocol{ICMPv4}), rule(Allow, Egress, InGroup(Public), []Protocol{ICMPv6})}, ""},
	{"words are case-insensitive", "ALLOW:Ingress@PUBLIC:TCP:80", []Rule{rule(Allow, Ingress, InGroup(Public), tcp, PortRange{80, 80})}, ""},

	// Invalid.
	{"missing @", "allow", nil, `missing "@"`},
	{"missing @ with target", "allow:public", nil, `missing "@"`},
	{"empty action", "@public", nil, "empty action"},
	{"empty direction", "allow:@public", nil, "empty direction"},
	{"empty target", "allow@", nil, "empty target"},
	{"empty protocol", "allow@public:", nil, "empty protocol"},
	{"empty port", "allow@public:tcp:", nil, "empty port"},
	{"empty list item", "allow@public,,deny@private", nil, "empty rule in list (item 2)"},
	{"trailing comma", "allow@public,", nil, "empty rule in list (item 2)"},
	{"empty token", "", nil, "empty rule"},
	{"trailing junk after port", "allow@public:tcp:80:x", nil, `unexpected ":x" after the port`},
	{"trailing junk after direction", "allow:egress:x@public", nil, `unexpected ":x" after the direction`},
	{"trailing junk after bracket", "allow@[::1]x", nil, `unexpected "x" after "[::1]"`},
	{"action typo", "alow@public", nil, `unknown action "alow"; did you mean "allow"?`},
	{"action typo deny", "dney@public", nil, `did you mean "deny"?`},
	{"unknown action no hint", "permit@public", nil, `unknown action "permit"; want allow or deny`},
	{"direction typo", "allow:egres@public", nil, `unknown direction "egres"; did you mean "egress"?`},
	{"direction typo ingress", "allow:ingres@public", nil, `did you mean "ingress"?`},
	{"group typo", "allow@pubic", nil, `unknown target "pubic"; did you mean "public"?`},
	{"group typo link-local", "allow@linklocal", nil, `did you mean "link-local"?`},
	{"group typo loopback", "deny@lopback", nil, `did you mean "loopback"?`},
	{"protocol typo", "allow@public:tpc", nil, `unknown protocol "tpc"; did you mean "tcp"?`},
	{"protocol icmp", "allow@public:icmp", nil, `did you mean "icmpv4"?`},
	{"port where protocol expected", "allow@public:443", nil, `"443" is a port, not a protocol; did you mean tcp:443?`},
	{"range where protocol expected", "allow@public:80-90", nil, "did you mean tcp:80-90?"},
	{"ICMP ingress", "allow:ingress@public:icmpv4", nil, "icmpv4 applies to egress only"},
	{"ICMP any direction", "allow:any@public:icmpv6", nil, "icmpv6 applies to egress only"},
	{"ICMP port", "allow@public:icmpv4:8", nil, "icmpv4 has no ports"},
	{"range backwards", "allow@public:tcp:90-80", nil, `port range "90-80" runs backwards; did you mean 80-90?`},
	{"port zero", "allow@public:tcp:0", nil, "port 0 out of range"},
	{"port too big", "allow@public:tcp:65536", nil, "port 65536 out of range"},
	{"port not a number", "allow@public:tcp:http", nil, `invalid port "http"`},
	{"bracketed IPv4", "allow@[10.0.0.1]", nil, "[10.0.0.1] is not an IPv6 address"},
	{"bracketed IPv4 CIDR", "allow@[10.0.0.0/8]", nil, "is not an IPv6 prefix"},
	{"bracketed domain", "allow@[example.com]", nil, "[example.com] is not an IPv6 address"},
	{"unclosed bracket", "allow@[::1", nil, "unclosed bracket"},
	{"unbracketed IPv6", "allow@2001:db8::1", nil, "write it in brackets: allow@[2001:db8::1]"},
	{"unbracketed IPv6 with proto", "allow@fe80::1:tcp", nil, "in brackets"},
	{"bad IPv4", "allow@10.0.0.256", nil, `invalid IPv4 address "10.0.0.256"`},
	{"short IPv4", "allow@10.0.0", nil, `invalid IPv4 address "10.0.0"`},
	{"bad CIDR length", "allow@10.0.0.0/33", nil, `invalid IPv4 CIDR "10.0.0.0/33"`},
	{"CIDR host bits", "allow@10.0.0.1/8", nil, "did you mean 10.0.0.0/8?"},
	{"unknown target", "allow@everything", nil, `unknown target "everything"; want any, a group`},
	{"dotless name hints domain=", "allow@localhost", nil, "or domain=localhost for a name without a dot"},
	{"bracketed mapped IPv4", "allow@[::ffff:10.0.0.1]", nil, "is IPv4-mapped; write the IPv4 form, 10.0.0.1"},
	{"bracketed mapped prefix", "allow@[::ffff:10.0.0.0/104]", nil, "write the IPv4 form, 10.0.0.0/8"},
	{"bracketed zone", "allow@[fe80::1%eth0]", nil, `has a zone; drop "%eth0"`},
	{"unknown target key", "allow@domian=example.com", nil, `unknown target key "domian"; did you mean "domain"?`},
	{"empty domain=", "allow@domain=", nil, "empty domain name"},
	{"wildcard suffix", "deny@suffix=*.example.com", nil, "already matches NAME and every name under it"},
	{"bad domain char", "allow@exa$mple.com", nil, `invalid character '$'`},
	{"empty label", "allow@example..com", nil, "empty label"},
}

func TestParseRule(t *testing.T) {
	if len(grammarTests) < 35 {
		t.Fatalf("grammar table has %d cases; the reference pins 35", len(grammarTests))
	}
	for _, tc := range grammarTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRule(tc.token)
			if tc.err != "" {
				if err == nil {
					t.Fatalf("ParseRule(%q) = %v; want error containing %q", tc.token, got, tc.err)
				}
				if !strings.Contains(err.Error(), tc.err) {
					t.Errorf("ParseRule(%q) error = %q; want it to contain %q", tc.token, err, tc.err)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("ParseRule(%q) error %v is not ErrInvalid", tc.token, err)
				}
				if !strings.Contains(err.Error(), "net rule") {
					t.Errorf("ParseRule(%q) error %q does not name the rule", tc.token, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRule(%q) error: %v", tc.token, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseRule(%q)\n got %#v\nwant %#v", tc.token, got, tc.want)
			}
			// The canonical form reads back to the same rules.
			again, err := ParseRule(joinRules(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("ParseRule(%q) = %v, %v; want %v", joinRules(got), again, err, got)
			}
		})
	}
}

func joinRules(rs []Rule) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

func TestRuleString(t *testing.T) {
	tests := []struct {
		r    Rule
		want string
	}{
		{rule(Allow, Egress, InGroup(Public), nil), "allow@public"},
		{rule(Deny, Ingress, AnyDest(), tcp, PortRange{80, 80}), "deny:ingress@any:tcp:80"},
		{rule(Allow, AnyDirection, pfx("10.0.0.0/8"), udp, PortRange{1, 1024}), "allow:any@10.0.0.0/8:udp:1-1024"},
		{rule(Allow, Egress, pfx("192.0.2.1/32"), nil), "allow@192.0.2.1"},
		{rule(Allow, Egress, pfx("2001:db8::/32"), nil), "allow@[2001:db8::/32]"},
		{rule(Allow, Egress, pfx("::1/128"), nil), "allow@[::1]"},
		{rule(Allow, Egress, Domain("example.com"), nil), "allow@example.com"},
		{rule(Allow, Egress, Domain("localhost"), nil), "allow@domain=localhost"},
		{rule(Allow, Egress, Domain("1.2.3.4"), nil), "allow@domain=1.2.3.4"},
		{rule(Deny, Egress, Suffix("example.com"), nil), "deny@suffix=example.com"},
		{rule(Allow, Egress, InGroup(Metadata), nil), "allow@metadata"},
		{rule(Allow, Egress, AnyDest(), []Protocol{TCP, UDP}, PortRange{53, 53}, PortRange{853, 853}),
			"allow@any:tcp:53,allow@any:tcp:853,allow@any:udp:53,allow@any:udp:853"},
	}
	for _, tc := range tests {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%#v.String() = %q; want %q", tc.r, got, tc.want)
		}
	}
}

func TestLevenshtein(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"allow", "allow", 0},
		{"alow", "allow", 1},
		{"dney", "deny", 2},
		{"kitten", "sitting", 3},
		{"tpc", "tcp", 2},
	}
	for _, tc := range tests {
		if got := levenshtein(tc.a, tc.b); got != tc.want {
			t.Errorf("levenshtein(%q, %q) = %d; want %d", tc.a, tc.b, got, tc.want)
		}
		if got := levenshtein(tc.b, tc.a); got != tc.want {
			t.Errorf("levenshtein(%q, %q) = %d; want %d", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestSuggestNeedsCloseEnoughWord(t *testing.T) {
	// A one-letter word is within distance 2 of "any" but is no typo of it.
	if got := suggest("x", []string{"any"}, "fallback"); got != "fallback" {
		t.Errorf("suggest(x) = %q; want fallback", got)
	}
}

func FuzzParseRule(f *testing.F) {
	for _, tc := range grammarTests {
		f.Add(tc.token)
	}
	f.Fuzz(func(t *testing.T, token string) {
		rules, err := ParseRule(token)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseRule(%q) error %v is not ErrInvalid", token, err)
			}
			return
		}
		if len(rules) == 0 {
			t.Fatalf("ParseRule(%q) returned no rules and no error", token)
		}
		s := joinRules(rules)
		again, err := ParseRule(s)
		if err != nil {
			t.Fatalf("ParseRule(%q) = %v; its String %q does not parse: %v", token, rules, s, err)
		}
		if !reflect.DeepEqual(again, rules) {
			t.Fatalf("ParseRule(%q) = %v; ParseRule(%q) = %v", token, rules, s, again)
		}
		if _, err := New(Config{Rules: rules}); err != nil {
			t.Fatalf("New(ParseRule(%q)): %v", token, err)
		}
	})
}

func TestSuggest(t *testing.T) {
	words := []string{"tcp", "udp", "icmpv4", "icmpv6"}
	tests := []struct{ word, want string }{
		{"tpc", `did you mean "tcp"?`},
		{"icmp", `did you mean "icmpv4"?`}, // ties with tcp at 2; the common prefix decides
		{"icmpv5", `did you mean "icmpv4"?`},
		{"udpp", `did you mean "udp"?`},
		{"sctp", `did you mean "tcp"?`},
		{"x", "none"}, // too short to resemble anything
		{"ud", `did you mean "udp"?`},
		{"quic", "none"}, // 3 or more from every word
	}
	for _, tc := range tests {
		if got := suggest(tc.word, words, "none"); got != tc.want {
			t.Errorf("suggest(%q) = %q; want %q", tc.word, got, tc.want)
		}
	}
}
