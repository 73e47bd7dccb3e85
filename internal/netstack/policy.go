package netstack

import "net/netip"

// Direction says who opened a flow.
type Direction uint8

const (
	// Egress flows are opened by the guest.
	Egress Direction = iota
	// Ingress flows are opened from the host through a published port.
	Ingress
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// Flow describes one guest flow for a Policy decision.
type Flow struct {
	Direction Direction
	// Dst is, for egress, the address the guest dialled (the gateway's own
	// address for host access); for ingress, the peer that connected to the
	// published port, so rules can admit some clients and not others.
	Dst netip.Addr
	// Protocol is "tcp", "udp", "icmpv4" or "icmpv6".
	Protocol string
	// Port is the destination port (the guest port for ingress); 0 for
	// ICMP.
	Port uint16
	// Names are the DNS names this sandbox's resolver answered with Dst, for
	// domain rules; lowercase, without the trailing dot.
	Names []string
}

// Policy decides which flows and names a sandbox may use. It is declared here,
// where it is consumed; another package implements it. Implementations must be
// safe for concurrent use and must not block: they are called on the packet
// path.
type Policy interface {
	AllowFlow(f Flow) bool
	// AllowName reports whether the guest may resolve name; false makes the
	// gateway's DNS answer REFUSED.
	AllowName(name string) bool
}

// allowAll is the Policy of a nil Config.Policy.
type allowAll struct{}

func (allowAll) AllowFlow(Flow) bool   { return true }
func (allowAll) AllowName(string) bool { return true }
