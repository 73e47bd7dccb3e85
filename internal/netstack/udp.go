package netstack

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// udpIdleTimeout ends a UDP session with no traffic either way.
	udpIdleTimeout = 60 * time.Second
	// udpDNSIdleTimeout is shorter: DNS to other resolvers is one exchange.
	udpDNSIdleTimeout = 10 * time.Second
	// maxDatagram is the largest UDP payload either side can carry.
	maxDatagram = 65535
)

// handleUDP runs on gVisor's packet path for a datagram that matches no
// endpoint: it must not block. Gateway port 53 never gets here (the DNS
// server's endpoints are bound to it).
func (s *Stack) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	f := Flow{Direction: Egress, Dst: addrFromTCPIP(id.LocalAddress), Protocol: "udp", Port: id.LocalPort}
	if !s.allow(f) {
		return true // dropped
	}
	// QUIC to an intercepted port would carry secrets' placeholders past
	// the interception: drop it, and clients fall back to TCP.
	if ic := s.cfg.Intercept; ic != nil && ic.Intercepts(interceptHost(f), f.Port) {
		s.c.denied.Add(1)
		return true
	}
	if !s.acquireFlow() {
		return true
	}
	var wq waiter.Queue
	ep, e := r.CreateEndpoint(&wq)
	if e != nil {
		s.releaseFlow()
		return true
	}
	gc := gonet.NewUDPConn(&wq, ep)
	idle := udpIdleTimeout
	if f.Port == 53 {
		idle = udpDNSIdleTimeout
	}
	ok := s.goTracked(func() {
		defer s.releaseFlow()
		defer gc.Close()
		ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
		hc, err := s.dial(ctx, "udp", s.hostAddr(f.Dst, f.Port))
		cancel()
		if err != nil {
			s.log.Debug("udp dial", "dst", f.Dst, "port", f.Port, "err", err)
			return
		}
		if !s.track(hc) {
			hc.Close()
			return
		}
		defer s.untrack(hc)
		s.c.opened.Add(1)
		relayDatagrams(gc, hc, idle)
	}, gc)
	if !ok {
		gc.Close()
		s.releaseFlow()
	}
	return true
}

// relayDatagrams copies datagrams both ways between two connected conns
// until neither side has sent anything for idle, or either fails. Both are
// closed on return.
func relayDatagrams(a, b net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	oneWay := func(dst, src net.Conn) {
		defer stop()
		buf := make([]byte, maxDatagram)
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() &&
					time.Since(time.Unix(0, last.Load())) < idle {
					continue // the other direction is active
				}
				return
			}
			last.Store(time.Now().UnixNano())
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { oneWay(a, b) })
	oneWay(b, a)
	wg.Wait()
}
