// Package netpolicy decides which network flows a sandbox may make (egress)
// and accept (ingress), and which DNS names its resolver may answer.
//
// A Policy is an ordered list of rules plus a default action per direction.
// The first rule that matches a flow decides it; if none does, the flow's
// direction's default applies. A rule names a direction, a destination (any
// address, a CIDR, a DNS name, a DNS suffix or an address group), optional
// protocols and port ranges, and an action. The model and the --net-rule
// grammar follow microsandbox 0.4.4 (reference §9 and §11).
//
// Policies must be exact, because each upstream bug this package learns from
// was a policy that was not: a domain allow rule that still got "connection
// refused", IP allow rules that did not apply, and a domain allow rule that
// opened unrelated addresses. Hence:
//
//   - A domain or suffix rule matches a flow only through Flow.Names, the names
//     this sandbox's own DNS answers resolved to the flow's address. It never
//     matches an address no name resolved to, and never a neighbouring one.
//   - Addresses are unmapped (::ffff:a.b.c.d becomes a.b.c.d) and stripped of
//     zones before any rule or group sees them, so an IPv4 rule applies to an
//     IPv4 peer however the stack spelled it.
//   - Groups are disjoint and every address has exactly one (Classify).
//     Addresses that are not globally routable are never "public".
//   - Rules are validated in New, so a Policy holds no rule that could match
//     differently from how it reads (a non-canonical CIDR such as 10.0.0.1/8 is
//     an error, not silently 10.0.0.0/8).
//
// DNS names are gated separately (AllowName): only an explicit deny of a name
// refuses it at the resolver. An allow-list of names does not refuse other
// names, because the address is gated when the sandbox connects; refusing
// names at DNS would also break names that a CIDR rule does allow.
//
// Package netpolicy uses only the standard library. A Policy is immutable
// after New and safe for concurrent use.
package netpolicy
