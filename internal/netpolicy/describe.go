package netpolicy

import (
	"encoding/json"
	"strings"
)

// String describes p on one line for logs, e.g.
// "egress deny, ingress allow; rules: allow@public". Rules are in the
// --net-rule grammar and in order.
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("egress " + p.defEgress.String() + ", ingress " + p.defIngress.String())
	if len(p.rules) == 0 {
		b.WriteString("; no rules")
	} else {
		b.WriteString("; rules: ")
		for i, r := range p.rules {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.String())
		}
	}
	if len(p.gateways) > 0 {
		b.WriteString("; host")
		for _, g := range p.gateways {
			b.WriteString(" " + g.String())
		}
	}
	return b.String()
}

// policyJSON is the stable JSON form of a Policy, for `msb inspect`.
type policyJSON struct {
	DefaultEgress  string   `json:"default_egress"`
	DefaultIngress string   `json:"default_ingress"`
	Rules          []string `json:"rules"`    // one --net-rule token per rule, in order
	Gateways       []string `json:"gateways"` // the host group
}

// MarshalJSON returns p as {"default_egress", "default_ingress", "rules",
// "gateways"}, each rule a --net-rule token (a comma list when the rule has
// several protocols or port ranges), so the JSON reads like the flags.
func (p *Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{
		DefaultEgress:  p.defEgress.String(),
		DefaultIngress: p.defIngress.String(),
		Rules:          make([]string, len(p.rules)),
		Gateways:       make([]string, len(p.gateways)),
	}
	for i, r := range p.rules {
		j.Rules[i] = r.String()
	}
	for i, g := range p.gateways {
		j.Gateways[i] = g.String()
	}
	return json.Marshal(j)
}
