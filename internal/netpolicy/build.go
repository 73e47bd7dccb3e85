package netpolicy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Preset names. Build also accepts them with underscores (public_only), the
// reference SDK's spelling.
const (
	// PresetPublicOnly is the default: egress only to the public group,
	// ingress allowed. It is a default-deny egress with a trailing rule
	// allowing public, so rules placed before it can still open (or close)
	// anything.
	PresetPublicOnly = "public-only"
	// PresetNone denies everything both ways.
	PresetNone = "none"
	// PresetAllowAll allows everything both ways.
	PresetAllowAll = "allow-all"
	// PresetNonLocal allows egress except to the sandbox's own machine and
	// its neighbourhood: loopback, link-local, metadata, host and reserved
	// are denied; public, private and multicast are allowed. Ingress is
	// allowed.
	PresetNonLocal = "non-local"
)

var presetNames = []string{PresetPublicOnly, PresetNone, PresetAllowAll, PresetNonLocal}

// presetConfig returns the named preset's Config without gateways.
func presetConfig(name string) (Config, error) {
	egress := func(a Action, g Group) Rule { return Rule{Direction: Egress, Destination: InGroup(g), Action: a} }
	w := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	switch w {
	case PresetPublicOnly, "":
		return Config{DefaultEgress: Deny, DefaultIngress: Allow, Rules: []Rule{egress(Allow, Public)}}, nil
	case PresetNone:
		return Config{DefaultEgress: Deny, DefaultIngress: Deny}, nil
	case PresetAllowAll:
		return Config{DefaultEgress: Allow, DefaultIngress: Allow}, nil
	case PresetNonLocal:
		return Config{DefaultEgress: Allow, DefaultIngress: Allow, Rules: []Rule{
			egress(Deny, Loopback), egress(Deny, LinkLocal), egress(Deny, Metadata),
			egress(Deny, Host), egress(Deny, Reserved),
		}}, nil
	}
	return Config{}, &inputError{
		input: fmt.Sprintf("network preset %q", name),
		msg:   "unknown preset",
		hint:  suggest(w, presetNames, "want "+strings.Join(presetNames, ", ")),
	}
}

// Preset returns the named preset's Policy with the given gateways.
func Preset(name string, gateways []netip.Addr) (*Policy, error) {
	cfg, err := presetConfig(name)
	if err != nil {
		return nil, err
	}
	cfg.Gateways = gateways
	return New(cfg)
}

// Options are the raw network-policy inputs of the CLI and the SDK, each
// named after its flag.
type Options struct {
	Preset             string   // a preset name; "" means public-only
	Rules              []string // --net-rule values, each a comma list
	DefaultEgress      string   // --net-default-egress: "", allow or deny
	DefaultIngress     string   // --net-default-ingress: "", allow or deny
	DenyDomains        []string // --deny-domain
	DenyDomainSuffixes []string // --deny-domain-suffix
	NoNet              bool     // --no-net
}

// Build turns o into a Policy with the reference's flag semantics (§11):
//
//   - NoNet alone gives the none preset (the caller should also give the
//     sandbox no network device); NoNet with any other option is an error.
//   - Deny-domain and deny-suffix rules come first, so they win over every
//     other rule; then the --net-rule rules in order; then the preset's rules.
//   - Defaults come from the flags if given, else from the preset. With no
//     preset, the defaults are public-only's (egress deny, ingress allow),
//     and public-only's allow-public rule is added only when no --net-rule
//     is given, so that rules form an allow-list (allow@api.example.com
//     means only that) rather than additions to public.
//   - When the only options are deny-domain flags, egress defaults to allow:
//     "everything but these names".
func Build(o Options, gateways []netip.Addr) (*Policy, error) {
	if o.NoNet {
		var used []string
		if o.Preset != "" {
			used = append(used, "a network preset")
		}
		if len(o.Rules) > 0 {
			used = append(used, "--net-rule")
		}
		if o.DefaultEgress != "" {
			used = append(used, "--net-default-egress")
		}
		if o.DefaultIngress != "" {
			used = append(used, "--net-default-ingress")
		}
		if len(o.DenyDomains) > 0 {
			used = append(used, "--deny-domain")
		}
		if len(o.DenyDomainSuffixes) > 0 {
			used = append(used, "--deny-domain-suffix")
		}
		if len(used) > 0 {
			return nil, &inputError{
				input: "--no-net",
				msg:   "cannot be combined with " + strings.Join(used, ", "),
				hint:  "drop --no-net to keep the network under these rules, or drop the rules to run without a network",
			}
		}
		return Preset(PresetNone, gateways)
	}

	cfg, err := presetConfig(o.Preset)
	if err != nil {
		return nil, err
	}
	denyOnly := o.Preset == "" && len(o.Rules) == 0 && o.DefaultEgress == "" &&
		len(o.DenyDomains)+len(o.DenyDomainSuffixes) > 0
	if o.Preset == "" && (len(o.Rules) > 0 || denyOnly) {
		cfg.Rules = nil // keep public-only's defaults, not its allow-public rule
	}
	if denyOnly {
		cfg.DefaultEgress = Allow
	}
	if cfg.DefaultEgress, err = flagAction("--net-default-egress", o.DefaultEgress, cfg.DefaultEgress); err != nil {
		return nil, err
	}
	if cfg.DefaultIngress, err = flagAction("--net-default-ingress", o.DefaultIngress, cfg.DefaultIngress); err != nil {
		return nil, err
	}

	var rules []Rule
	for _, d := range o.DenyDomains {
		dest, msg, hint := parseTarget("domain=" + d)
		if msg != "" {
			return nil, &inputError{input: fmt.Sprintf("--deny-domain %q", d), msg: msg, hint: hint}
		}
		rules = append(rules, Rule{Direction: Egress, Destination: dest, Action: Deny})
	}
	for _, d := range o.DenyDomainSuffixes {
		dest, msg, hint := parseTarget("suffix=" + d)
		if msg != "" {
			return nil, &inputError{input: fmt.Sprintf("--deny-domain-suffix %q", d), msg: msg, hint: hint}
		}
		rules = append(rules, Rule{Direction: Egress, Destination: dest, Action: Deny})
	}
	for _, tok := range o.Rules {
		rs, err := ParseRule(tok)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rs...)
	}
	cfg.Rules = append(rules, cfg.Rules...)
	cfg.Gateways = gateways
	return New(cfg)
}

// flagAction parses an allow|deny flag value; "" keeps def.
func flagAction(flag, v string, def Action) (Action, error) {
	switch strings.ToLower(v) {
	case "":
		return def, nil
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return 0, &inputError{
		input: fmt.Sprintf("%s %q", flag, v),
		msg:   fmt.Sprintf("unknown action %q", v),
		hint:  suggest(strings.ToLower(v), []string{"allow", "deny"}, "want allow or deny"),
	}
}
