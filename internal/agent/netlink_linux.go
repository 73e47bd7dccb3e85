package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// netlink is a minimal rtnetlink client: just enough to configure links,
// addresses and default routes (RFC 3549; struct layouts from
// include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h). It is not safe
// for concurrent use.
type netlink struct {
	fd  int
	seq uint32
}

// Sizes of the fixed headers (this mirrors struct nlmsghdr, ifinfomsg,
// ifaddrmsg, rtmsg).
const (
	nlmsgHdrLen  = 16
	ifInfoMsgLen = 16
	ifAddrMsgLen = 8
	rtMsgLen     = 12
	rtaHdrLen    = 4
)

func openNetlink() (*netlink, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &netlink{fd: fd}, nil
}

func (n *netlink) Close() error { return unix.Close(n.fd) }

// nlAttr appends one rtattr (type, payload) padded to 4 bytes.
func nlAttr(b []byte, typ uint16, data []byte) []byte {
	l := rtaHdrLen + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32Bytes(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// request sends one message with NLM_F_REQUEST|NLM_F_ACK|flags and waits
// for its acknowledgement.
func (n *netlink) request(typ uint16, flags uint16, body []byte) error {
	n.seq++
	msg := make([]byte, 0, nlmsgHdrLen+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(nlmsgHdrLen+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	msg = binary.NativeEndian.AppendUint32(msg, n.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := unix.Sendto(n.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		nr, _, err := unix.Recvfrom(n.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink recv: %w", err)
		}
		done, err := parseAck(buf[:nr], n.seq)
		if done || err != nil {
			return err
		}
	}
}

// parseAck scans a datagram for the NLMSG_ERROR answering seq; done is true
// once it was found. The data comes from the kernel, but it is bounds-checked
// like any other input.
func parseAck(b []byte, seq uint32) (done bool, err error) {
	for len(b) >= nlmsgHdrLen {
		l := binary.NativeEndian.Uint32(b[0:4])
		typ := binary.NativeEndian.Uint16(b[4:6])
		s := binary.NativeEndian.Uint32(b[8:12])
		if l < nlmsgHdrLen || int(l) > len(b) {
			return true, errors.New("netlink: malformed reply")
		}
		if s == seq && typ == unix.NLMSG_ERROR {
			if l < nlmsgHdrLen+4 {
				return true, errors.New("netlink: short error reply")
			}
			code := int32(binary.NativeEndian.Uint32(b[16:20]))
			if code == 0 {
				return true, nil
			}
			return true, unix.Errno(-code)
		}
		adv := (int(l) + 3) &^ 3
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return false, nil
}

// ifIndex is the index of the link called name (SIOCGIFINDEX, which any
// socket answers). Not net.InterfaceByName: that dumps and parses every
// link, and under TCG the first run of that much code cost the booting
// guest some 10 ms.
func (n *netlink) ifIndex(name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(n.fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("link %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// setLink changes a link: MTU (0 = keep), MAC (nil = keep), up.
func (n *netlink) setLink(index int, mtu int, mac net.HardwareAddr, up bool) error {
	body := make([]byte, ifInfoMsgLen)
	body[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(body[4:8], uint32(index))
	if up {
		binary.NativeEndian.PutUint32(body[8:12], unix.IFF_UP)
		binary.NativeEndian.PutUint32(body[12:16], unix.IFF_UP)
	}
	if mtu > 0 {
		body = nlAttr(body, unix.IFLA_MTU, u32Bytes(uint32(mtu)))
	}
	if mac != nil {
		body = nlAttr(body, unix.IFLA_ADDRESS, mac)
	}
	if err := n.request(unix.RTM_NEWLINK, 0, body); err != nil {
		return fmt.Errorf("set link %d: %w", index, err)
	}
	return nil
}

// addAddr adds an address; an address that already exists is not an error.
func (n *netlink) addAddr(index int, p netip.Prefix) error {
	a := p.Addr()
	family := byte(unix.AF_INET)
	if a.Is6() {
		family = unix.AF_INET6
	}
	body := make([]byte, ifAddrMsgLen)
	body[0] = family
	body[1] = byte(p.Bits())
	body[3] = unix.RT_SCOPE_UNIVERSE
	if a.IsLoopback() {
		body[3] = unix.RT_SCOPE_HOST
	}
	if a.Is6() {
		// The address is ours by configuration: no duplicate address
		// detection, so it is usable at once.
		body[2] = unix.IFA_F_NODAD
	}
	binary.NativeEndian.PutUint32(body[4:8], uint32(index))
	raw := a.AsSlice()
	body = nlAttr(body, unix.IFA_LOCAL, raw)
	body = nlAttr(body, unix.IFA_ADDRESS, raw)
	err := n.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	return nil
}

// addDefaultRoute adds a default route through gw on the link.
func (n *netlink) addDefaultRoute(index int, gw netip.Addr) error {
	family := byte(unix.AF_INET)
	if gw.Is6() {
		family = unix.AF_INET6
	}
	body := make([]byte, rtMsgLen)
	body[0] = family
	body[4] = unix.RT_TABLE_MAIN
	body[5] = unix.RTPROT_BOOT
	body[6] = unix.RT_SCOPE_UNIVERSE
	body[7] = unix.RTN_UNICAST
	body = nlAttr(body, unix.RTA_GATEWAY, gw.AsSlice())
	body = nlAttr(body, unix.RTA_OIF, u32Bytes(uint32(index)))
	err := n.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}

// setupNetwork brings up loopback and, if configured, the guest interface
// with its addresses and default routes (reference §8.2 step 8).
func setupNetwork(c Config) error {
	nl, err := openNetlink()
	if err != nil {
		return err
	}
	defer nl.Close()
	lo, err := nl.ifIndex("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := nl.setLink(lo, 0, nil, true); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := nl.addAddr(lo, netip.MustParsePrefix("127.0.0.1/8")); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := nl.addAddr(lo, netip.MustParsePrefix("::1/128")); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("loopback: %w", err)
	}
	if c.Net == nil {
		return nil
	}
	ifc, err := nl.ifIndex(c.Net.Iface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", c.Net.Iface, err)
	}
	// The MAC is set while the link is still down: not every driver
	// accepts a change on a running link.
	if err := nl.setLink(ifc, c.Net.MTU, c.Net.MAC, false); err != nil {
		return err
	}
	if err := nl.setLink(ifc, 0, nil, true); err != nil {
		return err
	}
	for _, ip := range []*IPConfig{c.IPv4, c.IPv6} {
		if ip == nil {
			continue
		}
		if err := nl.addAddr(ifc, ip.Addr); err != nil {
			return err
		}
		if ip.Gateway.IsValid() {
			if err := nl.addDefaultRoute(ifc, ip.Gateway); err != nil {
				return err
			}
		}
	}
	return nil
}
