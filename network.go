package msb

import (
	"time"

	"github.com/msb-go/msb/internal/launch"
)

// Networking options. Without any, a sandbox gets eth0 behind msb's
// user-mode network: egress to public addresses only, DNS through the
// host's resolvers (names answering with private addresses refused), and no
// published ports. The host is reachable as host.msb.internal only when a
// rule allows the group host (WithNetRule("allow@host")).

// WithoutNetwork gives the sandbox no network interface at all: loopback
// only.
func WithoutNetwork() Option { return func(c *config) { c.network.Disabled = true } }

// WithPort publishes a guest TCP port on 127.0.0.1:hostPort.
func WithPort(hostPort, guestPort uint16) Option {
	return func(c *config) {
		c.network.Ports = append(c.network.Ports, launch.Port{HostPort: hostPort, GuestPort: guestPort, Protocol: "tcp"})
	}
}

// WithPublish publishes a port from a -p style spec:
// [HOST_IP:]HOST_PORT:GUEST_PORT[/udp], e.g. "8080:80" or
// "0.0.0.0:5353:53/udp". A bad spec makes Create fail.
func WithPublish(spec string) Option {
	return func(c *config) {
		p, err := launch.ParsePort(spec)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.network.Ports = append(c.network.Ports, p)
	}
}

// WithNetRule adds policy rules in the --net-rule grammar
// (`<allow|deny>[:<egress|ingress|any>]@<target>[:<proto>[:<port|lo-hi>]]`,
// comma lists allowed); the first matching rule decides a flow.
func WithNetRule(rules ...string) Option {
	return func(c *config) { c.network.Rules = append(c.network.Rules, rules...) }
}

// WithNetPreset starts the policy from a preset: public-only (the
// default), none, allow-all or non-local.
func WithNetPreset(name string) Option { return func(c *config) { c.network.Preset = name } }

// WithNetDefaults sets what flows no rule matches get, per direction:
// "allow" or "deny" ("" keeps the preset's).
func WithNetDefaults(egress, ingress string) Option {
	return func(c *config) { c.network.DefaultEgress, c.network.DefaultIngress = egress, ingress }
}

// WithDenyDomain refuses DNS for these names and connections to the
// addresses they resolved to.
func WithDenyDomain(names ...string) Option {
	return func(c *config) { c.network.DenyDomains = append(c.network.DenyDomains, names...) }
}

// WithDenyDomainSuffix is WithDenyDomain for a name and all names under it.
func WithDenyDomainSuffix(suffixes ...string) Option {
	return func(c *config) { c.network.DenyDomainSuffixes = append(c.network.DenyDomainSuffixes, suffixes...) }
}

// WithDNSNameserver makes the sandbox's DNS forwarder ask these resolvers
// (ADDR or ADDR:PORT) instead of the host's.
func WithDNSNameserver(addrs ...string) Option {
	return func(c *config) { c.network.Nameservers = append(c.network.Nameservers, addrs...) }
}

// WithDNSTimeout bounds one upstream DNS query (default 5 s).
func WithDNSTimeout(d time.Duration) Option { return func(c *config) { c.network.DNSTimeout = d } }

// WithoutDNSRebindProtection lets DNS answers name private, loopback and
// link-local addresses.
func WithoutDNSRebindProtection() Option {
	return func(c *config) { c.network.NoRebindProtection = true }
}

// WithMaxConnections bounds the guest's concurrent flows (default 1024).
func WithMaxConnections(n int) Option { return func(c *config) { c.network.MaxConnections = n } }
