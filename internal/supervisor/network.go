package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/netpolicy"
	"github.com/msb-go/msb/internal/netstack"
	"github.com/msb-go/msb/internal/virtio"
	"github.com/msb-go/msb/internal/virtio/vhostuser"
	"github.com/msb-go/msb/internal/virtio/virtionet"
)

// network builds the sandbox's user-mode network: addressing from its slot,
// the policy from its flags, the stack (binding published ports now, so a
// port in use is a boot error of stage network with its errno) and the
// guest's eth0 configuration. It returns the guest environment agentd reads.
// A disabled network returns nil and gives the guest no NIC.
func (s *sandbox) network(spec *machine.Spec, undo *cleanups) ([]string, error) {
	n := s.launch.Network
	if n == nil {
		n = &launch.Network{}
	}
	if n.Disabled {
		return nil, nil
	}
	pool := netstack.DefaultPool
	if n.Pool != "" {
		p, err := netip.ParsePrefix(n.Pool)
		if err != nil {
			return nil, launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("network pool %q: %w", n.Pool, err))
		}
		pool = p
	}
	addr, err := netstack.AddressingFor(s.launch.Slot, pool)
	if err != nil {
		return nil, launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("network: %w", err))
	}
	pol, err := netpolicy.Build(netpolicy.Options{
		Preset: n.Preset, Rules: n.Rules, DefaultEgress: n.DefaultEgress, DefaultIngress: n.DefaultIngress,
		DenyDomains: n.DenyDomains, DenyDomainSuffixes: n.DenyDomainSuffixes,
	}, []netip.Addr{addr.GatewayV4, addr.GatewayV6})
	if err != nil {
		return nil, launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("network policy: %w", err))
	}
	cfg := netstack.Config{
		Addressing:       addr,
		Policy:           policyAdapter{pol},
		RebindProtection: !n.NoRebindProtection,
		DNSTimeout:       n.DNSTimeout,
		MaxConnections:   n.MaxConnections,
		Logger:           s.log,
	}
	if cfg.Intercept, s.guestCA, err = s.interceptor(); err != nil {
		return nil, err
	}
	for _, ns := range n.Nameservers {
		ap, err := parseNameserver(ns)
		if err != nil {
			return nil, launch.Fail(launch.PrefixInvalidConfig, err)
		}
		cfg.Nameservers = append(cfg.Nameservers, ap)
	}
	for _, p := range n.Ports {
		port := netstack.Port{HostPort: p.HostPort, GuestPort: p.GuestPort, Protocol: p.Protocol}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return nil, launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("port %s: %w", p, err))
			}
			port.HostIP = a
		}
		cfg.Ports = append(cfg.Ports, port)
	}
	st, err := netstack.New(cfg)
	if err != nil {
		return nil, launch.Fail(launch.PrefixNetwork, err)
	}
	undo.add(func() { st.Close() })
	// The guest's NIC is a virtio-net device in this process on the
	// stack's FrameLink: frames go between guest memory and the stack
	// with no socket between (the native VMM puts the device on
	// virtio-mmio, QEMU gets it over vhost-user: serveNet).
	link, err := st.FrameLink()
	if err != nil {
		return nil, launch.Fail(launch.PrefixNetwork, err)
	}
	undo.add(func() { link.Close() })
	dev, err := virtionet.New(virtionet.Config{Backend: link, MAC: addr.GuestMAC})
	if err != nil {
		return nil, launch.Fail(launch.PrefixNetwork, fmt.Errorf("virtio-net: %w", err))
	}
	undo.add(func() { dev.Close() }) // before the link: its goroutines use it
	spec.Net = &machine.Net{Device: dev, MAC: addr.GuestMAC.String()}
	s.net = st
	s.log.Info("network", "guest", addr.GuestV4, "gateway", addr.GatewayV4, "guest6", addr.GuestV6,
		"policy", pol.String(), "ports", len(cfg.Ports))
	return addr.GuestEnv(netstack.DefaultHostAlias), nil
}

// serveNet serves the guest's virtio-net device (network's, on the stack's
// FrameLink: the Go code the native VMM puts on virtio-mmio) to QEMU over
// vhost-user: QEMU, only the front-end, connects to runtime/net.sock.
// Frames then move between guest memory and the stack in this process, and
// the guest gets checksum and TCP segmentation offload, which QEMU's stream
// netdev cannot give it: under TCG the guest's own checksumming of every
// 1500-byte segment was what bounded guest→host TCP. The socket is bound
// now (QEMU connects while it starts, before confinement allows no new
// socket) and serves exactly one connection from our own user; undo stops
// it and joins the goroutine.
func (s *sandbox) serveNet(spec *machine.Spec, undo *cleanups) error {
	if spec.Net == nil {
		return nil
	}
	dev, ok := spec.Net.Device.(virtio.Device)
	if !ok {
		return launch.Fail(launch.PrefixNetwork, fmt.Errorf("virtio-net: no device to serve (%T)", spec.Net.Device))
	}
	path := s.home.NetSock(s.launch.Name)
	_ = os.Remove(path)
	ln, err := listenUnix(path)
	if err != nil {
		return launch.Fail(launch.PrefixNetwork, fmt.Errorf("vhost-user net socket: %w", err))
	}
	spec.Net.VhostUserPath = path
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Closing the listener also removes the socket file (net.UnixListener
	// unlinks what it bound).
	undo.add(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := acceptFront(ln.(*net.UnixListener))
		ln.Close()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("vhost-user net: no front-end", "err", err)
			}
			return
		}
		if err := vhostuser.Serve(ctx, conn, dev, s.log); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("vhost-user net ended", "err", err)
		}
	}()
	return nil
}

// acceptFront accepts the vhost-user front-end's connection on ln: the
// first one from a process of our own user (the directory is ours and
// 0700, so no other user can reach the socket; the check costs nothing).
func acceptFront(ln *net.UnixListener) (*net.UnixConn, error) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && uid == os.Getuid() {
			return c, nil
		}
		c.Close()
	}
}

// peerUID is the user id of c's peer.
func peerUID(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid, uerr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { uid, uerr = peerUIDOf(int(fd)) }); err != nil {
		return -1, err
	}
	return uid, uerr
}

// parseNameserver reads ADDR or ADDR:PORT (IPv6 in brackets with a port).
func parseNameserver(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dns nameserver %q: want ADDR or ADDR:PORT", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

// policyAdapter lets a netpolicy.Policy decide the stack's flows.
type policyAdapter struct{ p *netpolicy.Policy }

var _ netstack.Policy = policyAdapter{}

func (a policyAdapter) AllowFlow(f netstack.Flow) bool {
	return a.p.AllowFlow(netpolicy.Flow{
		Egress: f.Direction == netstack.Egress, Dst: f.Dst, Protocol: f.Protocol, Port: f.Port, Names: f.Names,
	})
}

func (a policyAdapter) AllowName(name string) bool { return a.p.AllowName(name) }
