package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// spliceBufLen is the copy buffer per direction of a spliced flow: a bound on
// what one flow holds in user space, on top of the sockets' own buffers.
const spliceBufLen = 32 << 10

// handleTCP decides one guest SYN. It runs in a goroutine gVisor starts for
// the forwarder, at most tcpMaxInFlight at a time. Policy is asked before
// anything is dialled; the SYN is answered (SYN-ACK or RST) only once the
// host side is known.
func (s *Stack) handleTCP(r *tcp.ForwarderRequest) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		r.Complete(true)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	id := r.ID()
	f := Flow{Direction: Egress, Dst: addrFromTCPIP(id.LocalAddress), Protocol: "tcp", Port: id.LocalPort}
	if !s.allow(f) {
		r.Complete(true)
		return
	}
	if !s.acquireFlow() {
		r.Complete(true)
		return
	}
	defer s.releaseFlow()

	if ic := s.cfg.Intercept; ic != nil && ic.Intercepts(interceptHost(f), f.Port) {
		s.intercept(r, f, ic)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	hc, err := s.dialTCP(ctx, f.Dst, f.Port)
	cancel()
	if err != nil {
		s.log.Debug("tcp dial", "dst", f.Dst, "port", f.Port, "err", err)
		r.Complete(true)
		return
	}
	gc, ok := s.acceptGuest(r)
	if !ok {
		hc.Close()
		return
	}
	if !s.track(gc, hc) {
		gc.Close()
		hc.Close()
		return
	}
	defer s.untrack(gc, hc)
	splice(gc, hc)
}

// acceptGuest completes the guest's handshake (SYN-ACK) and returns the
// guest side of the flow; on failure the SYN is answered with a reset.
func (s *Stack) acceptGuest(r *tcp.ForwarderRequest) (*gonet.TCPConn, bool) {
	var wq waiter.Queue
	ep, e := r.CreateEndpoint(&wq)
	if e != nil {
		r.Complete(true)
		return nil, false
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	s.c.opened.Add(1)
	return gonet.NewTCPConn(&wq, ep), true
}

// interceptHost is what a flow is matched against before its TLS names it:
// the first DNS name this sandbox resolved to the destination, else the IP.
func interceptHost(f Flow) string {
	if len(f.Names) > 0 {
		return f.Names[0]
	}
	return f.Dst.String()
}

// intercept completes the guest's handshake at once and hands the flow to
// ic, which dials the real destination only if and when it needs to.
func (s *Stack) intercept(r *tcp.ForwarderRequest, f Flow, ic Interceptor) {
	gc, ok := s.acceptGuest(r)
	if !ok {
		return
	}
	if !s.track(gc) {
		gc.Close()
		return
	}
	defer s.untrack(gc)
	dial := func(ctx context.Context) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		return s.dialTCP(ctx, f.Dst, f.Port)
	}
	if err := ic.Handle(s.ctx, gc, net.JoinHostPort(f.Dst.String(), strconv.Itoa(int(f.Port))), dial); err != nil {
		s.log.Debug("intercepted flow", "dst", f.Dst, "port", f.Port, "err", err)
	}
}

// splice copies both ways between a and b until both directions end,
// propagating half-close; an error in either direction tears both down.
// Both conns are closed on return.
func splice(a, b net.Conn) {
	var once sync.Once
	teardown := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	var wg sync.WaitGroup
	oneWay := func(dst, src net.Conn) {
		buf := make([]byte, spliceBufLen)
		_, err := io.CopyBuffer(dst, src, buf)
		if err != nil && !errors.Is(err, io.EOF) {
			teardown()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cw.CloseWrite() == nil {
				return
			}
		}
		teardown()
	}
	wg.Go(func() { oneWay(a, b) })
	oneWay(b, a)
	wg.Wait()
	teardown()
}
