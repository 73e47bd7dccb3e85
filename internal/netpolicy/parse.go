package netpolicy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseRule parses one --net-rule value, a comma-separated list of rules:
//
//	<allow|deny>[:<egress|ingress|any>]@<target>[:<proto>[:<port|lo-hi>]]
//
// The direction defaults to egress. The target is any; a group (public,
// private, loopback, link-local, meta or metadata, multicast, host, reserved);
// an IPv4 address or CIDR (an address means /32); a bracketed IPv6 address or
// CIDR ([::1], [fd00::/8]; an address means /128); domain=NAME; suffix=NAME;
// or a bare domain name, recognised by a dot and a last label that is not a
// number. The protocol is tcp, udp, icmpv4 or icmpv6 (ICMP only for egress);
// a port or port range needs tcp or udp. Words are case-insensitive, and
// errors name the offending token and suggest the nearest word for a typo.
// The rules come back in list order, normalized as New would.
func ParseRule(token string) ([]Rule, error) {
	var rules []Rule
	for i, item := range strings.Split(token, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			what := "empty rule in list"
			if !strings.Contains(token, ",") {
				what = "empty rule"
			}
			return nil, &inputError{
				input: fmt.Sprintf("net rule %q", token),
				msg:   fmt.Sprintf("%s (item %d)", what, i+1),
				hint:  "separate rules with single commas, e.g. allow@public,deny@10.0.0.0/8",
			}
		}
		r, err := parseOne(item)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// parseOne parses a single rule, item, already trimmed.
func parseOne(item string) (Rule, error) {
	fail := func(msg, hint string) (Rule, error) {
		return Rule{}, &inputError{input: fmt.Sprintf("net rule %q", item), msg: msg, hint: hint}
	}
	head, tail, ok := strings.Cut(item, "@")
	if !ok {
		return fail(`missing "@" between the action and the target`, "write e.g. allow@public or deny:egress@example.com")
	}
	var r Rule

	// Action and direction.
	actWord, dirWord, hasDir := strings.Cut(head, ":")
	if actWord == "" {
		return fail("empty action before \"@\"", "start with allow or deny")
	}
	switch strings.ToLower(actWord) {
	case "allow":
		r.Action = Allow
	case "deny":
		r.Action = Deny
	default:
		return fail(fmt.Sprintf("unknown action %q", actWord), suggest(strings.ToLower(actWord), []string{"allow", "deny"}, "want allow or deny"))
	}
	if hasDir {
		if strings.Contains(dirWord, ":") {
			return fail(fmt.Sprintf("unexpected %q after the direction", dirWord[strings.Index(dirWord, ":"):]), "write <action>[:<direction>]@<target>")
		}
		switch strings.ToLower(dirWord) {
		case "":
			return fail("empty direction after \":\"", "write egress, ingress or any, or drop the \":\"")
		case "egress":
			r.Direction = Egress
		case "ingress":
			r.Direction = Ingress
		case "any":
			r.Direction = AnyDirection
		default:
			return fail(fmt.Sprintf("unknown direction %q", dirWord), suggest(strings.ToLower(dirWord), []string{"egress", "ingress", "any"}, "want egress, ingress or any"))
		}
	}

	// Target.
	var target, rest string
	if strings.HasPrefix(tail, "[") {
		end := strings.IndexByte(tail, ']')
		if end < 0 {
			return fail(fmt.Sprintf("unclosed bracket in target %q", tail), `close it: [2001:db8::1]`)
		}
		inner := tail[1:end]
		d, msg, hint := bracketed(inner)
		if msg != "" {
			return fail(msg, hint)
		}
		r.Destination = d
		rest = tail[end+1:]
		if rest != "" && rest[0] != ':' {
			return fail(fmt.Sprintf("unexpected %q after %q", rest, tail[:end+1]), "write [v6]:<proto>[:<port>]")
		}
		rest = strings.TrimPrefix(rest, ":")
		if rest == "" && len(tail) > end+1 {
			return fail(fmt.Sprintf("empty protocol after %q", tail[:end+1]), "write tcp, udp, icmpv4 or icmpv6, or drop the \":\"")
		}
	} else {
		if looksIPv6(tail) {
			return fail(fmt.Sprintf("unbracketed IPv6 target %q", tail), fmt.Sprintf("write it in brackets: %s@[%s]", head, ipv6Part(tail)))
		}
		var hasRest bool
		target, rest, hasRest = strings.Cut(tail, ":")
		if target == "" {
			return fail("empty target after \"@\"", "write any, a group, an IP or CIDR, [IPv6] or a domain")
		}
		d, msg, hint := parseTarget(target)
		if msg != "" {
			return fail(msg, hint)
		}
		r.Destination = d
		if hasRest && rest == "" {
			return fail(fmt.Sprintf("empty protocol after %q", target), "write tcp, udp, icmpv4 or icmpv6, or drop the \":\"")
		}
	}

	// Protocol and ports.
	if rest != "" {
		protoWord, portWord, hasPort := strings.Cut(rest, ":")
		lw := strings.ToLower(protoWord)
		switch lw {
		case "":
			return fail("empty protocol", "write tcp, udp, icmpv4 or icmpv6")
		case "tcp", "udp", "icmpv4", "icmpv6":
			r.Protocols = []Protocol{protocolOf(lw)}
		default:
			if looksPort(protoWord) {
				return fail(fmt.Sprintf("%q is a port, not a protocol", protoWord), fmt.Sprintf("did you mean tcp:%s?", protoWord))
			}
			return fail(fmt.Sprintf("unknown protocol %q", protoWord), suggest(lw, []string{"tcp", "udp", "icmpv4", "icmpv6"}, "want tcp, udp, icmpv4 or icmpv6"))
		}
		p := r.Protocols[0]
		if !p.hasPorts() && r.Direction != Egress {
			return fail(fmt.Sprintf("%s applies to egress only, not %s", p, r.Direction), "drop the direction or write :egress")
		}
		if hasPort {
			if !p.hasPorts() {
				return fail(fmt.Sprintf("%s has no ports, got %q", p, portWord), "drop the port, or use tcp or udp")
			}
			if strings.Contains(portWord, ":") {
				return fail(fmt.Sprintf("unexpected %q after the port", portWord[strings.Index(portWord, ":"):]), "write <proto>:<port> or <proto>:<lo>-<hi>")
			}
			pr, msg, hint := parsePorts(portWord)
			if msg != "" {
				return fail(msg, hint)
			}
			r.Ports = []PortRange{pr}
		}
	}
	nr, err := normalize(r)
	if err != nil {
		return fail(err.Error(), "")
	}
	return nr, nil
}

// bracketed parses the inside of [...]: an IPv6 address or prefix. On
// error it returns a message and a hint instead.
func bracketed(inner string) (d Destination, msg, hint string) {
	const v6only = "brackets are for IPv6 only; write IPv4 addresses and names without them"
	if inner == "" {
		return d, "empty brackets", "write an IPv6 address such as [2001:db8::1]"
	}
	var p netip.Prefix
	if strings.Contains(inner, "/") {
		var err error
		if p, err = netip.ParsePrefix(inner); err != nil || !p.Addr().Is6() {
			return d, fmt.Sprintf("[%s] is not an IPv6 prefix", inner), v6only
		}
	} else {
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is6() {
			return d, fmt.Sprintf("[%s] is not an IPv6 address", inner), v6only
		}
		if a.Zone() != "" {
			return d, fmt.Sprintf("[%s] has a zone", inner), fmt.Sprintf("drop %q; rules match addresses, not interfaces", "%"+a.Zone())
		}
		p = netip.PrefixFrom(a, 128)
	}
	if p.Addr().Is4In6() {
		// Flows are unmapped before matching, so a mapped rule would never match.
		v4 := p.Addr().Unmap().String()
		if p.Bits() != 128 {
			v4 += fmt.Sprintf("/%d", max(p.Bits()-96, 0))
		}
		return d, fmt.Sprintf("[%s] is IPv4-mapped", inner), fmt.Sprintf("write the IPv4 form, %s", v4)
	}
	return CIDR(p), "", ""
}

// looksIPv6 reports whether tail starts with an IPv6 address written without
// brackets, which would make the colons ambiguous.
func looksIPv6(tail string) bool {
	return strings.Count(tail, ":") >= 2 && isIPv6Prefix(ipv6Part(tail))
}

// ipv6Part returns the longest leading part of tail that parses as an IPv6
// address or prefix, or tail if none does.
func ipv6Part(tail string) string {
	for end := len(tail); end > 0; end-- {
		if isIPv6Prefix(tail[:end]) {
			return tail[:end]
		}
	}
	return tail
}

func isIPv6Prefix(s string) bool {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr().Is6()
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

// parseTarget parses an unbracketed target. On error it returns a message
// and a hint instead of a Destination.
func parseTarget(t string) (d Destination, msg, hint string) {
	lt := strings.ToLower(t)
	if k, name, ok := strings.Cut(t, "="); ok {
		var kind DestKind
		switch strings.ToLower(k) {
		case "domain":
			kind = DestDomain
		case "suffix":
			kind = DestSuffix
		default:
			return d, fmt.Sprintf("unknown target key %q", k), suggest(strings.ToLower(k), []string{"domain", "suffix"}, "want domain=NAME or suffix=NAME")
		}
		if strings.HasPrefix(name, "*.") || (kind == DestSuffix && strings.HasPrefix(name, ".")) {
			return d, fmt.Sprintf("%q is not a plain domain name", name), "suffix=NAME already matches NAME and every name under it; drop the \"*.\" or \".\""
		}
		n, err := checkName(name)
		if err != nil {
			return d, err.Error(), ""
		}
		return Destination{Kind: kind, Name: n}, "", ""
	}
	if lt == "any" {
		return AnyDest(), "", ""
	}
	if g, err := ParseGroup(lt); err == nil {
		return InGroup(g), "", ""
	}
	if looksNumeric(t) {
		if strings.Contains(t, "/") {
			p, err := netip.ParsePrefix(t)
			if err != nil || !p.Addr().Is4() {
				return d, fmt.Sprintf("invalid IPv4 CIDR %q", t), "write e.g. 10.0.0.0/8, or [2001:db8::/32] for IPv6"
			}
			if m := p.Masked(); m != p {
				return d, fmt.Sprintf("CIDR %q has host bits set", t), fmt.Sprintf("did you mean %s?", m)
			}
			return CIDR(p), "", ""
		}
		a, err := netip.ParseAddr(t)
		if err != nil || !a.Is4() {
			return d, fmt.Sprintf("invalid IPv4 address %q", t), "write e.g. 192.0.2.1, or [2001:db8::1] for IPv6"
		}
		return CIDR(netip.PrefixFrom(a, 32)), "", ""
	}
	if strings.Contains(t, ".") {
		n, err := checkName(t)
		if err != nil {
			return d, err.Error(), ""
		}
		return Domain(n), "", ""
	}
	return d, fmt.Sprintf("unknown target %q", t), suggest(strings.ReplaceAll(lt, "_", "-"), append([]string{"any"}, groupWords...),
		fmt.Sprintf("want any, a group (public, private, loopback, link-local, metadata, multicast, host), an IP or CIDR, [IPv6], a domain, or domain=%s for a name without a dot", t))
}

// looksNumeric reports whether t is made of digits, dots and at most one
// slash, and so is meant as an IPv4 address or CIDR rather than a name. A
// name whose last label is a number is not a valid host name either.
func looksNumeric(t string) bool {
	host, _, _ := strings.Cut(t, "/")
	if host == "" {
		return strings.HasPrefix(t, "/")
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

// looksPort reports whether s is a port or port range, given where a
// protocol belongs.
func looksPort(s string) bool {
	lo, hi, _ := strings.Cut(s, "-")
	return isDigits(lo) && (hi == "" && !strings.Contains(s, "-") || isDigits(hi))
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parsePorts parses "N" or "LO-HI" (1..65535, LO <= HI).
func parsePorts(s string) (pr PortRange, msg, hint string) {
	if s == "" {
		return pr, "empty port", "write a port (443) or a range (8000-8080), or drop the \":\""
	}
	loS, hiS, isRange := strings.Cut(s, "-")
	if !isRange {
		hiS = loS
	}
	lo, msg, hint := parsePort(loS, s)
	if msg != "" {
		return pr, msg, hint
	}
	hi, msg, hint := parsePort(hiS, s)
	if msg != "" {
		return pr, msg, hint
	}
	if lo > hi {
		return pr, fmt.Sprintf("port range %q runs backwards", s), fmt.Sprintf("did you mean %d-%d?", hi, lo)
	}
	return PortRange{Lo: lo, Hi: hi}, "", ""
}

func parsePort(s, whole string) (uint16, string, string) {
	if !isDigits(s) {
		return 0, fmt.Sprintf("invalid port %q", whole), "write a port (443) or a range (8000-8080)"
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Sprintf("port %s out of range", s), "ports run from 1 to 65535"
	}
	return uint16(n), "", ""
}

// suggest returns `did you mean "w"?` for the word of candidates nearest to
// word within Levenshtein distance 2 (and closer than word's own length, so
// a one-letter word does not "resemble" everything), else fallback. Ties go
// to the longer common prefix: "icmp" suggests icmpv4, not tcp.
func suggest(word string, candidates []string, fallback string) string {
	best, bestD, bestP := "", 3, 0
	for _, c := range candidates {
		d := levenshtein(word, c)
		if d > 2 || d >= len(word) || d > bestD {
			continue
		}
		p := commonPrefix(word, c)
		if d < bestD || p > bestP {
			best, bestD, bestP = c, d, p
		}
	}
	if best == "" {
		return fallback
	}
	return fmt.Sprintf("did you mean %q?", best)
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// levenshtein returns the edit distance (insertions, deletions,
// substitutions) between a and b, by bytes.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// String returns r in the --net-rule grammar, which ParseRule reads back to
// the same rule. A rule with several protocols or port ranges becomes a
// comma list of one rule per protocol and range, which matches the same
// flows.
func (r Rule) String() string {
	var b strings.Builder
	head := r.Action.String()
	if r.Direction != Egress {
		head += ":" + r.Direction.String()
	}
	head += "@" + r.Destination.String()
	protos := r.Protocols
	if len(protos) == 0 {
		return head
	}
	for i, p := range protos {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(r.Ports) == 0 || !p.hasPorts() {
			b.WriteString(head + ":" + p.String())
			continue
		}
		for j, pr := range r.Ports {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(head + ":" + p.String() + ":" + pr.String())
		}
	}
	return b.String()
}

// String returns d as a --net-rule target.
func (d Destination) String() string {
	switch d.Kind {
	case DestAny:
		return "any"
	case DestCIDR:
		p := d.Prefix
		if !p.IsValid() {
			return "invalid-cidr"
		}
		s := p.String()
		if p.IsSingleIP() {
			s = p.Addr().String()
		}
		if p.Addr().Is6() {
			return "[" + s + "]"
		}
		return s
	case DestDomain:
		// The same test parseTarget applies to auto-detect a bare name.
		if strings.Contains(d.Name, ".") && !looksNumeric(d.Name) {
			return d.Name
		}
		return "domain=" + d.Name
	case DestSuffix:
		return "suffix=" + d.Name
	case DestGroup:
		return d.Group.String()
	}
	return fmt.Sprintf("destination(%d)", uint8(d.Kind))
}

// Suggest returns `did you mean "w"?` for the candidate nearest to word
// (the rule of suggest), or "" when none is near: for other flags' typos.
func Suggest(word string, candidates []string) string {
	return suggest(word, candidates, "")
}
