package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// startPorts binds every published port now, so a conflict is reported by
// New rather than discovered later.
func (s *Stack) startPorts() error {
	for _, p := range s.cfg.Ports {
		hostIP := p.HostIP
		if !hostIP.IsValid() {
			hostIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		addr := netip.AddrPortFrom(hostIP, p.HostPort).String()
		var lc net.ListenConfig
		switch p.Protocol {
		case "", "tcp":
			ln, err := lc.Listen(s.ctx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("publish tcp %s to guest port %d: %w", addr, p.GuestPort, err)
			}
			if !s.goTracked(func() { s.acceptLoop(ln, p.GuestPort) }, ln) {
				ln.Close()
				return net.ErrClosed
			}
		case "udp":
			pc, err := lc.ListenPacket(s.ctx, "udp", addr)
			if err != nil {
				return fmt.Errorf("publish udp %s to guest port %d: %w", addr, p.GuestPort, err)
			}
			if !s.goTracked(func() { s.udpPortLoop(pc, p.GuestPort) }, pc) {
				pc.Close()
				return net.ErrClosed
			}
		default:
			return fmt.Errorf("publish %s: unknown protocol %q", addr, p.Protocol)
		}
	}
	return nil
}

func (s *Stack) guestAddr(port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(s.cfg.Addressing.GuestV4.As4()), Port: port}
}

func (s *Stack) acceptLoop(ln net.Listener, guestPort uint16) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			// EMFILE and friends: back off rather than spin.
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-s.ctx.Done():
				return
			}
		}
		f := Flow{Direction: Ingress, Dst: peerAddr(c.RemoteAddr()), Protocol: "tcp", Port: guestPort}
		if !s.allow(f) || !s.acquireFlow() {
			c.Close()
			continue
		}
		if !s.goTracked(func() {
			defer s.releaseFlow()
			ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
			gc, err := gonet.DialContextTCP(ctx, s.gs, s.guestAddr(guestPort), ipv4.ProtocolNumber)
			cancel()
			if err != nil {
				c.Close()
				return
			}
			s.c.opened.Add(1)
			if !s.track(gc) {
				gc.Close()
				c.Close()
				return
			}
			defer s.untrack(gc)
			splice(c, gc)
		}, c) {
			c.Close()
			s.releaseFlow()
			return
		}
	}
}

// udpPortLoop forwards datagrams from host clients of a published UDP port
// into the guest, one session (and gVisor endpoint) per client address.
func (s *Stack) udpPortLoop(pc net.PacketConn, guestPort uint16) {
	var mu sync.Mutex // protects sessions
	sessions := make(map[string]*gonet.UDPConn)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			continue
		}
		key := from.String()
		mu.Lock()
		gc := sessions[key]
		mu.Unlock()
		if gc == nil {
			f := Flow{Direction: Ingress, Dst: peerAddr(from), Protocol: "udp", Port: guestPort}
			if !s.allow(f) || !s.acquireFlow() {
				continue
			}
			ga := s.guestAddr(guestPort)
			gc, err = gonet.DialUDP(s.gs, nil, &ga, ipv4.ProtocolNumber)
			if err != nil {
				s.releaseFlow()
				continue
			}
			mu.Lock()
			sessions[key] = gc
			mu.Unlock()
			s.c.opened.Add(1)
			ok := s.goTracked(func() {
				defer s.releaseFlow()
				defer func() {
					mu.Lock()
					delete(sessions, key)
					mu.Unlock()
					gc.Close()
				}()
				rb := make([]byte, maxDatagram)
				for {
					gc.SetReadDeadline(time.Now().Add(udpIdleTimeout))
					n, err := gc.Read(rb)
					if err != nil {
						return
					}
					if _, err := pc.WriteTo(rb[:n], from); err != nil {
						return
					}
				}
			}, gc)
			if !ok {
				gc.Close()
				s.releaseFlow()
				return
			}
		}
		gc.Write(buf[:n])
	}
}

// peerAddr is the IP address of a published port's client (the zero Addr,
// which every policy denies, if it has none).
func peerAddr(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	return ip.Unmap()
}
