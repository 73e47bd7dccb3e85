package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Action is what a rule or default does with a flow. The zero value is Deny,
// so a forgotten default fails closed.
type Action uint8

// Actions.
const (
	Deny Action = iota
	Allow
)

// String returns "allow" or "deny".
func (a Action) String() string {
	switch a {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Direction says which flows a rule applies to. The zero value is Egress,
// the grammar's default.
type Direction uint8

// Directions.
const (
	Egress       Direction = iota // flows the sandbox opens
	Ingress                       // flows to the sandbox's published ports
	AnyDirection                  // both
)

// String returns "egress", "ingress" or "any".
func (d Direction) String() string {
	switch d {
	case Egress:
		return "egress"
	case Ingress:
		return "ingress"
	case AnyDirection:
		return "any"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Protocol is a transport a rule may be limited to.
type Protocol uint8

// Protocols. The zero value is not a protocol.
const (
	TCP Protocol = iota + 1
	UDP
	ICMPv4
	ICMPv6
)

var protocolNames = [...]string{TCP: "tcp", UDP: "udp", ICMPv4: "icmpv4", ICMPv6: "icmpv6"}

// String returns the protocol's name as Flow.Protocol and the grammar spell it.
func (p Protocol) String() string {
	if p >= TCP && int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// hasPorts reports whether flows of p carry ports.
func (p Protocol) hasPorts() bool { return p == TCP || p == UDP }

// protocolOf maps a Flow.Protocol to a Protocol; 0 if unknown.
func protocolOf(s string) Protocol {
	switch s {
	case "tcp":
		return TCP
	case "udp":
		return UDP
	case "icmpv4":
		return ICMPv4
	case "icmpv6":
		return ICMPv6
	}
	return 0
}

// PortRange is the inclusive range of ports Lo..Hi; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return fmt.Sprint(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// DestKind says which field of a Destination applies.
type DestKind uint8

// Destination kinds. The zero value is DestAny.
const (
	DestAny    DestKind = iota // every address
	DestCIDR                   // Destination.Prefix
	DestDomain                 // Destination.Name exactly
	DestSuffix                 // Destination.Name or any name under it
	DestGroup                  // Destination.Group
)

// Destination is what a rule matches a flow's peer against. Build one with
// AnyDest, CIDR, Domain, Suffix or InGroup; only the field of its Kind is set.
type Destination struct {
	Kind   DestKind
	Prefix netip.Prefix
	Name   string // lowercase, no trailing dot once the rule is in a Policy
	Group  Group
}

// AnyDest matches every address.
func AnyDest() Destination { return Destination{Kind: DestAny} }

// CIDR matches addresses in p.
func CIDR(p netip.Prefix) Destination { return Destination{Kind: DestCIDR, Prefix: p} }

// Domain matches flows whose Names contain name.
func Domain(name string) Destination { return Destination{Kind: DestDomain, Name: name} }

// Suffix matches flows with a name equal to suffix or ending in "."+suffix.
func Suffix(suffix string) Destination { return Destination{Kind: DestSuffix, Name: suffix} }

// InGroup matches addresses of group g.
func InGroup(g Group) Destination { return Destination{Kind: DestGroup, Group: g} }

// Rule is one policy entry. Empty Protocols means every protocol and empty
// Ports every port; Ports require Protocols made only of tcp and udp, and
// ICMP protocols require Direction Egress (ingress is published ports, which
// are tcp and udp).
type Rule struct {
	Direction   Direction
	Destination Destination
	Protocols   []Protocol
	Ports       []PortRange
	Action      Action
}

// Config is the input of New. The zero Config denies everything.
type Config struct {
	DefaultEgress  Action
	DefaultIngress Action
	Rules          []Rule // first match wins
	// Gateways are the sandbox's gateway addresses, the Host group: flows
	// to them reach services on the host itself.
	Gateways []netip.Addr
}

// Policy is a validated Config. It is immutable and safe for concurrent use.
type Policy struct {
	defEgress, defIngress Action
	rules                 []Rule
	gateways              []netip.Addr
}

// New validates cfg and returns its Policy. Names are normalized (lowercase,
// no trailing dot) and the Policy keeps its own copies of every slice.
func New(cfg Config) (*Policy, error) {
	p := &Policy{defEgress: cfg.DefaultEgress, defIngress: cfg.DefaultIngress}
	if err := checkAction(cfg.DefaultEgress); err != nil {
		return nil, fmt.Errorf("default egress: %w", err)
	}
	if err := checkAction(cfg.DefaultIngress); err != nil {
		return nil, fmt.Errorf("default ingress: %w", err)
	}
	for i, gw := range cfg.Gateways {
		if !gw.IsValid() {
			return nil, fmt.Errorf("gateway %d: %w", i, &inputError{input: "gateway", msg: "invalid address"})
		}
		p.gateways = append(p.gateways, canonical(gw))
	}
	p.rules = make([]Rule, len(cfg.Rules))
	for i, r := range cfg.Rules {
		nr, err := normalize(r)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i, err)
		}
		p.rules[i] = nr
	}
	return p, nil
}

func checkAction(a Action) error {
	if a != Allow && a != Deny {
		return &inputError{input: "action", msg: fmt.Sprintf("unknown action %d", a), hint: "want Allow or Deny"}
	}
	return nil
}

// normalize validates r and returns a copy in canonical form.
func normalize(r Rule) (Rule, error) {
	bad := func(msg, hint string) (Rule, error) {
		return Rule{}, &inputError{input: "rule " + r.String(), msg: msg, hint: hint}
	}
	if err := checkAction(r.Action); err != nil {
		return Rule{}, err
	}
	if r.Direction > AnyDirection {
		return bad(fmt.Sprintf("unknown direction %d", r.Direction), "want Egress, Ingress or AnyDirection")
	}
	d := r.Destination
	switch d.Kind {
	case DestAny:
	case DestCIDR:
		if !d.Prefix.IsValid() {
			return bad("invalid prefix", "")
		}
		if d.Prefix.Addr().Is4In6() {
			return bad(fmt.Sprintf("prefix %s is IPv4-mapped IPv6", d.Prefix), "write the IPv4 prefix; flows are unmapped before matching")
		}
		if m := d.Prefix.Masked(); m != d.Prefix {
			return bad(fmt.Sprintf("prefix %s has bits set past /%d", d.Prefix, d.Prefix.Bits()), fmt.Sprintf("did you mean %s?", m))
		}
	case DestDomain, DestSuffix:
		name, err := checkName(d.Name)
		if err != nil {
			return bad(err.Error(), "")
		}
		d.Name = name
	case DestGroup:
		if d.Group == NoGroup || d.Group > Public {
			return bad(fmt.Sprintf("unknown group %d", d.Group), "")
		}
	default:
		return bad(fmt.Sprintf("unknown destination kind %d", d.Kind), "")
	}
	for _, pr := range r.Protocols {
		if pr < TCP || pr > ICMPv6 {
			return bad(fmt.Sprintf("unknown protocol %d", pr), "")
		}
		if !pr.hasPorts() && r.Direction != Egress {
			return bad(fmt.Sprintf("%s applies to egress only", pr), "make the rule egress")
		}
		if !pr.hasPorts() && len(r.Ports) > 0 {
			return bad(fmt.Sprintf("%s has no ports", pr), "drop the ports or use tcp or udp")
		}
	}
	if len(r.Ports) > 0 && len(r.Protocols) == 0 {
		return bad("ports need a protocol", "limit the rule to tcp or udp")
	}
	for _, pr := range r.Ports {
		if pr.Lo == 0 || pr.Lo > pr.Hi {
			return bad(fmt.Sprintf("invalid port range %d-%d", pr.Lo, pr.Hi), "want 1 <= lo <= hi <= 65535")
		}
	}
	return Rule{
		Direction:   r.Direction,
		Destination: d,
		Protocols:   slices.Clone(r.Protocols),
		Ports:       slices.Clone(r.Ports),
		Action:      r.Action,
	}, nil
}

// Rules returns a copy of the policy's rules, normalized.
func (p *Policy) Rules() []Rule {
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		r.Protocols = slices.Clone(r.Protocols)
		r.Ports = slices.Clone(r.Ports)
		out[i] = r
	}
	return out
}

// Defaults returns the default actions for egress and ingress.
func (p *Policy) Defaults() (egress, ingress Action) { return p.defEgress, p.defIngress }

// Flow is one connection or datagram exchange the caller asks about.
type Flow struct {
	// Egress is true for a flow the sandbox opens and false for one it
	// accepts on a published port.
	Egress bool
	// Dst is the peer: the destination of an egress flow, the source of an
	// ingress one. It is unmapped before matching.
	Dst netip.Addr
	// Protocol is "tcp", "udp", "icmpv4" or "icmpv6"; anything else is
	// denied.
	Protocol string
	// Port is the destination port of a tcp or udp flow: the peer's port
	// for egress, the sandbox's (guest) port for ingress.
	Port uint16
	// Names are the DNS names this sandbox's resolver answered with Dst,
	// every name of the answer chain (the queried name and any CNAME
	// targets). Domain and suffix rules match only these.
	Names []string
}

// Verdict says why Decide decided: which rule, or the default.
type Verdict struct {
	// Rule is the index in Config.Rules of the deciding rule, DefaultRule
	// when the direction's default decided, or InvalidFlow.
	Rule   int
	Egress bool
	Group  Group // the peer's group
}

// Verdict.Rule values that are not rule indexes.
const (
	DefaultRule = -1 // no rule matched
	InvalidFlow = -2 // the flow's address or protocol is invalid; always denied
)

// String describes v for a log line, e.g. "rule 2 (group public)".
func (v Verdict) String() string {
	dir := "ingress"
	if v.Egress {
		dir = "egress"
	}
	switch v.Rule {
	case DefaultRule:
		return fmt.Sprintf("default %s (group %s)", dir, v.Group)
	case InvalidFlow:
		return "invalid " + dir + " flow"
	}
	return fmt.Sprintf("rule %d (group %s)", v.Rule, v.Group)
}

// Decide returns the action for f and why. The first rule whose direction,
// destination, protocols and ports all match decides; otherwise the default
// of f's direction does. A flow with an invalid address or an unknown
// protocol is denied.
func (p *Policy) Decide(f Flow) (Action, Verdict) {
	proto := protocolOf(f.Protocol)
	if !f.Dst.IsValid() || proto == 0 {
		return Deny, Verdict{Rule: InvalidFlow, Egress: f.Egress}
	}
	dst := canonical(f.Dst)
	g := Host
	if !slices.Contains(p.gateways, dst) {
		g = classify(dst)
	}
	fn := flowNames{raw: f.Names}
	for i := range p.rules {
		if p.rules[i].match(&f, &fn, dst, g, proto) {
			return p.rules[i].Action, Verdict{Rule: i, Egress: f.Egress, Group: g}
		}
	}
	def := p.defIngress
	if f.Egress {
		def = p.defEgress
	}
	return def, Verdict{Rule: DefaultRule, Egress: f.Egress, Group: g}
}

// AllowFlow reports whether Decide allows f.
func (p *Policy) AllowFlow(f Flow) bool {
	a, _ := p.Decide(f)
	return a == Allow
}

// flowNames normalizes a flow's names once, and only if a name rule is
// reached, so that name rules compare with == rather than case folding.
type flowNames struct {
	raw  []string
	done bool
	n    int       // names in buf, when all fit
	buf  [4]string // no allocation for the usual short answer chain
	more []string  // all names, when they do not fit in buf
}

func (fn *flowNames) get() []string {
	if !fn.done {
		fn.done = true
		for _, n := range fn.raw {
			n = normName(n)
			switch {
			case n == "":
			case fn.more != nil:
				fn.more = append(fn.more, n)
			case fn.n < len(fn.buf):
				fn.buf[fn.n] = n
				fn.n++
			default:
				fn.more = append(append([]string(nil), fn.buf[:]...), n)
			}
		}
	}
	if fn.more != nil {
		return fn.more
	}
	return fn.buf[:fn.n]
}

// normName returns n lowercase without one trailing dot, allocating only if
// n has upper-case letters.
func normName(n string) string {
	n = strings.TrimSuffix(n, ".")
	for i := 0; i < len(n); i++ {
		if c := n[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(n)
		}
	}
	return n
}

// match reports whether r applies to f; dst and g are f's canonical peer and
// its group, proto its protocol, fn its names.
func (r *Rule) match(f *Flow, fn *flowNames, dst netip.Addr, g Group, proto Protocol) bool {
	if len(r.Protocols) > 0 && !slices.Contains(r.Protocols, proto) {
		return false
	}
	switch r.Direction {
	case Egress:
		if !f.Egress {
			return false
		}
	case Ingress:
		if f.Egress {
			return false
		}
	}
	if len(r.Ports) > 0 {
		// Validation keeps ports to tcp and udp rules, so proto has ports.
		ok := false
		for _, pr := range r.Ports {
			if pr.Lo <= f.Port && f.Port <= pr.Hi {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	d := &r.Destination
	switch d.Kind {
	case DestAny:
		return true
	case DestCIDR:
		return d.Prefix.Contains(dst)
	case DestGroup:
		return d.Group == g
	case DestDomain:
		return slices.Contains(fn.get(), d.Name)
	case DestSuffix:
		for _, n := range fn.get() {
			if underSuffix(n, d.Name) {
				return true
			}
		}
	}
	return false
}

// AllowName reports whether the sandbox's resolver may answer name. It walks
// the egress domain and suffix rules in order: the first that matches name
// decides if it is an allow rule (the name is needed for some traffic) or a
// deny rule for every protocol and port; a deny limited to some protocols or
// ports leaves the name resolvable. Other rules and the defaults never refuse
// a name: the address is gated when the sandbox connects.
func (p *Policy) AllowName(name string) bool {
	name = normName(name)
	if name == "" {
		return true
	}
	for i := range p.rules {
		r := &p.rules[i]
		if r.Direction == Ingress {
			continue
		}
		var m bool
		switch r.Destination.Kind {
		case DestDomain:
			m = name == r.Destination.Name
		case DestSuffix:
			m = underSuffix(name, r.Destination.Name)
		default:
			continue
		}
		if !m {
			continue
		}
		if r.Action == Allow {
			return true
		}
		if len(r.Protocols) == 0 && len(r.Ports) == 0 {
			return false
		}
	}
	return true
}

// underSuffix reports whether n is suffix or a name under it; both are
// normalized. The character before the suffix must be a dot, so
// "badexample.com" is not under "example.com".
func underSuffix(n, suffix string) bool {
	if !strings.HasSuffix(n, suffix) {
		return false
	}
	cut := len(n) - len(suffix)
	return cut == 0 || (cut >= 2 && n[cut-1] == '.')
}

// checkName validates a DNS name for a domain or suffix rule and returns it
// lowercase without a trailing dot: 1 to 253 characters of dot-separated
// labels of 1 to 63 letters, digits, hyphens or underscores.
func checkName(s string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(s, "."))
	if n == "" {
		return "", fmt.Errorf("empty domain name")
	}
	if len(n) > 253 {
		return "", fmt.Errorf("domain name %q is longer than 253 characters", s)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" {
			return "", fmt.Errorf("domain name %q has an empty label", s)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("domain name %q has a label longer than 63 characters", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("domain name %q has invalid character %q", s, c)
			}
		}
	}
	return n, nil
}
