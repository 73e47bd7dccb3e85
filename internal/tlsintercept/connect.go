package tlsintercept

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// HandleConnect runs one guest flow to an HTTP proxy (a port the network
// stack routes here because the guest's HTTPS_PROXY points at it), and closes
// guest. dst is the proxy's host:port; dial connects to the proxy.
//
// It reads the guest's first request head (at most 64 KiB). A CONNECT is
// forwarded byte for byte to the proxy, whose answer goes back to the guest;
// on 2xx, a tunnel to an intercepted host:port is handled exactly like a
// direct flow in Handle, with the CONNECT target as destination, so secrets
// are substituted behind the proxy too. Later origin connections for the
// same guest connection repeat the CONNECT. Tunnels to other targets are
// spliced. A CONNECT head carrying a placeholder is a violation: the proxy
// hop has no verified identity. Any other method is plain-text proxying,
// which, like plain HTTP anywhere, is spliced uninspected.
func (i *Interceptor) HandleConnect(ctx context.Context, guest net.Conn, dst string, dial Dialer) error {
	defer guest.Close()
	if i.terminated.Load() {
		return ErrTerminated
	}
	proxyHost, _, err := splitDst(dst)
	if err != nil {
		return fmt.Errorf("tlsintercept: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { guest.Close() })
	defer stop()

	var rec bytes.Buffer
	lr := &io.LimitedReader{R: guest, N: maxHeaderBytes}
	br := bufio.NewReader(io.TeeReader(lr, &rec))
	guest.SetReadDeadline(time.Now().Add(readHeaderTimeout))
	req, err := http.ReadRequest(br)
	guest.SetReadDeadline(time.Time{})
	if err != nil {
		status := http.StatusBadRequest
		if lr.N == 0 {
			status = http.StatusRequestHeaderFieldsTooLarge
		}
		writeStatus(guest, status)
		return fmt.Errorf("tlsintercept: read proxy request: %w", err)
	}
	headLen := rec.Len() - br.Buffered()
	head := bytes.Clone(rec.Bytes()[:headLen])
	early := bytes.Clone(rec.Bytes()[headLen:]) // guest bytes sent before our answer

	if req.Method != http.MethodConnect {
		up, err := dial(ctx)
		if err != nil {
			writeStatus(guest, http.StatusBadGateway)
			return fmt.Errorf("tlsintercept: dial proxy %s: %w", dst, err)
		}
		if _, err := up.Write(rec.Bytes()); err != nil {
			up.Close()
			return fmt.Errorf("tlsintercept: write proxy %s: %w", dst, err)
		}
		splice(ctx, guest, up)
		return nil
	}

	// No host is a verified identity for the proxy hop: "" matches no
	// pattern, not even "*".
	noHost := []string{""}
	k := i.secrets.scan(req.RequestURI, noHost)
	if k < 0 {
		_, k = i.secrets.rewriteHeader(req.Header.Clone(), noHost)
	}
	if k >= 0 {
		verr := i.report(proxyHost, i.secrets.secrets[k].env)
		writeStatus(guest, http.StatusForbidden)
		return verr
	}
	targetHost, targetPort, err := splitDst(req.RequestURI)
	if err != nil {
		writeStatus(guest, http.StatusBadRequest)
		return fmt.Errorf("tlsintercept: connect: %w", err)
	}

	tunnel, answer, resp, err := connectVia(ctx, dial, head)
	if err != nil {
		writeStatus(guest, http.StatusBadGateway)
		return fmt.Errorf("tlsintercept: connect via %s: %w", dst, err)
	}
	if resp != nil { // the proxy refused: relay its answer and end
		defer tunnel.Close()
		resp.Close = true
		resp.Write(guest)
		return nil
	}
	if _, err := guest.Write(answer); err != nil {
		tunnel.Close()
		return fmt.Errorf("tlsintercept: answer connect: %w", err)
	}
	gc := &replayConn{Conn: guest, r: io.MultiReader(bytes.NewReader(early), guest)}
	if !i.Intercepts(targetHost, targetPort) {
		splice(ctx, gc, tunnel)
		return nil
	}
	var mu sync.Mutex
	first := tunnel
	redial := func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		c := first
		first = nil
		mu.Unlock()
		if c != nil {
			return c, nil
		}
		c, _, resp, err := connectVia(ctx, dial, head)
		if err != nil {
			return nil, err
		}
		if resp != nil {
			c.Close()
			return nil, fmt.Errorf("proxy refused CONNECT: %s", resp.Status)
		}
		return c, nil
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			first.Close()
		}
	}()
	return i.handleTLS(ctx, gc, targetHost, targetPort, redial)
}

// connectVia dials the proxy, sends head (a CONNECT request) and reads the
// answer. On 2xx it returns the tunnel and the answer's raw head, for the
// caller to relay to the guest. On any other status it returns the conn and
// the parsed response (its body framed by the proxy's headers).
func connectVia(ctx context.Context, dial Dialer, head []byte) (tunnel net.Conn, answer []byte, refused *http.Response, err error) {
	up, err := dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := up.Write(head); err != nil {
		up.Close()
		return nil, nil, nil, err
	}
	var rec bytes.Buffer
	lr := &io.LimitedReader{R: up, N: maxResponseHeaderBytes}
	br := bufio.NewReader(io.TeeReader(lr, &rec))
	up.SetReadDeadline(time.Now().Add(handshakeTimeout))
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	up.SetReadDeadline(time.Time{})
	if err != nil {
		up.Close()
		return nil, nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		return up, nil, resp, nil
	}
	if br.Buffered() > 0 {
		up.Close()
		return nil, nil, nil, errors.New("proxy sent data before the tunnel opened")
	}
	return up, rec.Bytes(), nil, nil
}

// writeStatus answers a proxy request with an empty response and closes.
func writeStatus(w io.Writer, status int) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, http.StatusText(status))
}
