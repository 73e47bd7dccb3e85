package netstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// DefaultPool is the IPv4 pool sandbox /30s are carved from.
//
// microsandbox 0.4.4 used 100.96.0.0/.., which sits inside Tailscale's CGNAT
// range 100.64.0.0/10, so a host on a tailnet could not reach its own peers
// from a sandbox. 0.6 moved to 172.16.0.0/12, which collides with Docker's
// default bridge networks. 198.18.0.0/15 (RFC 2544, reserved for benchmarking)
// is used by neither. Each sandbox has its own stack, so addresses need not be
// unique across sandboxes: the slot simply wraps modulo the pool's /30 count.
var DefaultPool = netip.MustParsePrefix("198.18.0.0/15")

// DefaultHostAlias is the name the guest uses to reach the host's loopback.
const DefaultHostAlias = "host.msb.internal"

// DefaultMTU is the guest NIC's MTU.
const DefaultMTU = 1500

// Addressing is the layer-2 and layer-3 addressing of one sandbox: an IPv4 /30
// and an IPv6 /64, the guest's and gateway's MACs and the MTU. The gateway is
// also the guest's DNS server.
type Addressing struct {
	GuestMAC, GatewayMAC net.HardwareAddr
	MTU                  int

	GuestV4, GatewayV4 netip.Addr
	PrefixV4           int

	GuestV6, GatewayV6 netip.Addr
	PrefixV6           int
}

// AddressingFor returns the addressing of slot within pool (an IPv4 prefix of
// /30 or shorter; the zero Prefix means DefaultPool). Within the /30 chosen by
// slot, .1 is the gateway and .2 the guest. IPv6 is fd42:6d73:62:<slot16>::2/64
// with gateway ::1; the MACs are 02:6d:73:<hi>:<lo>:02 (guest) and :01
// (gateway), where hi and lo are the bytes of slot modulo 65536.
func AddressingFor(slot int, pool netip.Prefix) (Addressing, error) {
	if slot < 0 {
		return Addressing{}, fmt.Errorf("addressing for slot %d: negative slot", slot)
	}
	if !pool.IsValid() {
		pool = DefaultPool
	}
	pool = pool.Masked()
	if !pool.Addr().Is4() || pool.Bits() > 30 {
		return Addressing{}, fmt.Errorf("addressing for slot %d: pool %s: %w", slot, pool, errBadPool)
	}
	blocks := uint64(1) << (30 - pool.Bits())
	idx := uint64(slot) % blocks
	b4 := pool.Addr().As4()
	base := uint64(binary.BigEndian.Uint32(b4[:])) + 4*idx
	v4 := func(off uint64) netip.Addr {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], uint32(base+off))
		return netip.AddrFrom4(a)
	}
	s16 := uint16(slot)
	v6 := func(last byte) netip.Addr {
		a := [16]byte{0xfd, 0x42, 0x6d, 0x73, 0x00, 0x62, byte(s16 >> 8), byte(s16)}
		a[15] = last
		return netip.AddrFrom16(a)
	}
	mac := func(last byte) net.HardwareAddr {
		return net.HardwareAddr{0x02, 0x6d, 0x73, byte(s16 >> 8), byte(s16), last}
	}
	return Addressing{
		GuestMAC:   mac(2),
		GatewayMAC: mac(1),
		MTU:        DefaultMTU,
		GuestV4:    v4(2),
		GatewayV4:  v4(1),
		PrefixV4:   30,
		GuestV6:    v6(2),
		GatewayV6:  v6(1),
		PrefixV6:   64,
	}, nil
}

var errBadPool = errors.New("pool must be an IPv4 prefix of /30 or shorter")

// GuestEnv returns the MSB_NET* and MSB_HOST_ALIAS variables agentd parses to
// configure eth0. An empty hostAlias means DefaultHostAlias.
func (a Addressing) GuestEnv(hostAlias string) []string {
	if hostAlias == "" {
		hostAlias = DefaultHostAlias
	}
	return []string{
		fmt.Sprintf("MSB_NET=iface=eth0,mac=%s,mtu=%d", a.GuestMAC, a.MTU),
		fmt.Sprintf("MSB_NET_IPV4=addr=%s,gw=%s,dns=%s", netip.PrefixFrom(a.GuestV4, a.PrefixV4), a.GatewayV4, a.GatewayV4),
		fmt.Sprintf("MSB_NET_IPV6=addr=%s,gw=%s,dns=%s", netip.PrefixFrom(a.GuestV6, a.PrefixV6), a.GatewayV6, a.GatewayV6),
		"MSB_HOST_ALIAS=" + hostAlias,
	}
}

// validate reports whether a is usable by New.
func (a Addressing) validate() error {
	switch {
	case len(a.GuestMAC) != 6 || len(a.GatewayMAC) != 6:
		return errors.New("addressing: MACs must be 6 bytes")
	case a.MTU < 1280 || a.MTU > 65535:
		return fmt.Errorf("addressing: MTU %d out of range [1280, 65535]", a.MTU)
	case !a.GuestV4.Is4() || !a.GatewayV4.Is4() || a.PrefixV4 < 1 || a.PrefixV4 > 30:
		return errors.New("addressing: IPv4 guest, gateway and prefix (1..30) required")
	case !a.GuestV6.Is6() || !a.GatewayV6.Is6() || a.PrefixV6 < 1 || a.PrefixV6 > 126:
		return errors.New("addressing: IPv6 guest, gateway and prefix (1..126) required")
	}
	return nil
}
