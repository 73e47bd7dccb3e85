package launch

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Network is a sandbox's network as the user asked for it (CLI flags or SDK
// options); the sandbox process derives the addressing, the policy and the
// user-mode stack from it. The zero value is the default network: eth0 with
// public-only egress, DNS through the host's resolvers with rebind
// protection, no published ports.
type Network struct {
	// Disabled leaves the guest without eth0 (--no-net): loopback only.
	Disabled bool `json:"disabled,omitempty"`
	// Preset, Rules, DefaultEgress, DefaultIngress, DenyDomains and
	// DenyDomainSuffixes are the policy flags, in the grammar of
	// internal/netpolicy (reference §11).
	Preset             string   `json:"preset,omitempty"`
	Rules              []string `json:"rules,omitempty"`
	DefaultEgress      string   `json:"default_egress,omitempty"`
	DefaultIngress     string   `json:"default_ingress,omitempty"`
	DenyDomains        []string `json:"deny_domains,omitempty"`
	DenyDomainSuffixes []string `json:"deny_domain_suffixes,omitempty"`
	// Nameservers are ADDR[:PORT] resolvers for the gateway's DNS forwarder;
	// empty means the host's.
	Nameservers []string `json:"nameservers,omitempty"`
	// DNSTimeout bounds one upstream query; 0 means 5 s.
	DNSTimeout time.Duration `json:"dns_timeout,omitempty"`
	// NoRebindProtection lets DNS answers name private, loopback and
	// link-local addresses.
	NoRebindProtection bool `json:"no_rebind_protection,omitempty"`
	// Ports are published from the host into the guest.
	Ports []Port `json:"ports,omitempty"`
	// MaxConnections bounds concurrent guest flows; 0 means the default.
	MaxConnections int `json:"max_connections,omitempty"`
	// Pool is the IPv4 prefix sandbox addresses come from; empty means
	// the default (internal/netstack).
	Pool string `json:"pool,omitempty"`
}

// Port is one published port: connections to HostIP:HostPort reach the
// guest's GuestPort.
type Port struct {
	HostIP    string `json:"host_ip,omitempty"` // default 127.0.0.1
	HostPort  uint16 `json:"host_port"`
	GuestPort uint16 `json:"guest_port"`
	Protocol  string `json:"protocol"` // tcp or udp
}

// String renders p the way ParsePort reads it.
func (p Port) String() string {
	s := strconv.Itoa(int(p.HostPort)) + ":" + strconv.Itoa(int(p.GuestPort))
	if p.HostIP != "" {
		host := p.HostIP
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		s = host + ":" + s
	}
	if p.Protocol == "udp" {
		s += "/udp"
	}
	return s
}

// ParsePort reads -p [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]. An IPv6
// host address is written in brackets. The host address defaults to
// 127.0.0.1: publishing beyond the machine must be asked for.
func ParsePort(s string) (Port, error) {
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("port %q: %s (want [HOST_IP:]HOST_PORT:GUEST_PORT[/udp], e.g. 8080:80)", s, why)
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	p := Port{Protocol: "tcp"}
	if hasProto {
		switch proto {
		case "tcp", "udp":
			p.Protocol = proto
		default:
			return bad("protocol must be tcp or udp")
		}
	}
	host := ""
	if strings.HasPrefix(spec, "[") {
		end := strings.Index(spec, "]")
		if end < 0 || len(spec) <= end+1 || spec[end+1] != ':' {
			return bad("unclosed or misplaced IPv6 bracket")
		}
		host, spec = spec[1:end], spec[end+2:]
	}
	parts := strings.Split(spec, ":")
	switch {
	case len(parts) == 3 && host == "":
		host, parts = parts[0], parts[1:]
	case len(parts) != 2:
		return bad("wrong number of fields")
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return bad("host address is not an IP address")
		}
		p.HostIP = a.String()
	}
	for i, dst := range []*uint16{&p.HostPort, &p.GuestPort} {
		n, err := strconv.ParseUint(parts[i], 10, 16)
		if err != nil || n == 0 {
			return bad("ports are numbers from 1 to 65535")
		}
		*dst = uint16(n)
	}
	return p, nil
}
