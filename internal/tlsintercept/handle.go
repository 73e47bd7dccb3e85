package tlsintercept

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

const (
	// maxHeaderBytes caps a guest request's header block (request line
	// included); more is answered with 431 and the connection closed.
	maxHeaderBytes = 64 << 10
	// maxResponseHeaderBytes caps an origin's or proxy's response header.
	maxResponseHeaderBytes = 1 << 20
	handshakeTimeout       = 15 * time.Second
	readHeaderTimeout      = 30 * time.Second
	idleTimeout            = 2 * time.Minute
)

// Dialer opens one TCP connection to the real destination (or, for
// HandleConnect, to the proxy). It may be called several times per flow
// (the origin closed a keep-alive connection) or never (the first request
// was blocked, or the guest left).
type Dialer func(ctx context.Context) (net.Conn, error)

// Handle runs one guest TCP flow to an intercepted port until either side
// ends it or ctx is cancelled, and closes guest. dst is the host:port the
// guest dialled (normally an IP literal).
//
// It reads the ClientHello first. A bypassed SNI is spliced to dial's
// connection byte for byte. Otherwise the guest's TLS is terminated with a
// leaf minted for the SNI (the destination IP without SNI), ALPN http/1.1
// only, and each HTTP/1.1 request is checked, rewritten and re-sent over TLS
// verified for the same name. Non-TLS bytes close the flow without a reply.
//
// The result is nil after an ordinary end, a *ViolationError when a request
// was blocked, ErrTerminated after a BlockAndTerminate violation, or another
// error describing why the flow failed early.
func (i *Interceptor) Handle(ctx context.Context, guest net.Conn, dst string, dial Dialer) error {
	defer guest.Close()
	if i.terminated.Load() {
		return ErrTerminated
	}
	host, port, err := splitDst(dst)
	if err != nil {
		return fmt.Errorf("tlsintercept: %w", err)
	}
	return i.handleTLS(ctx, guest, host, port, dial)
}

func (i *Interceptor) handleTLS(ctx context.Context, guest net.Conn, dstHost string, port uint16, dial Dialer) error {
	stop := context.AfterFunc(ctx, func() { guest.Close() })
	defer stop()

	hello, replay, err := peekHello(guest, handshakeTimeout)
	if err != nil {
		return fmt.Errorf("tlsintercept: read client hello for %s: %w", dstHost, err)
	}
	name := normalizeHost(hello.ServerName)
	if name == "" {
		name = dstHost
	}
	if !validHost(name) {
		return fmt.Errorf("tlsintercept: invalid server name %q", name)
	}
	gc := &replayConn{Conn: guest, r: io.MultiReader(bytes.NewReader(replay), guest)}

	if !i.secretHost(name) && matchAny(i.bypass, name) {
		up, err := dial(ctx)
		if err != nil {
			return fmt.Errorf("tlsintercept: dial bypassed %s: %w", name, err)
		}
		splice(ctx, gc, up)
		return nil
	}

	tc := tls.Server(gc, &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/2 and HTTP/1.1 both: net/http's server speaks either to the
		// guest, and every request, whatever its protocol, reaches the same
		// handler (checked, rewritten, re-sent to the origin as HTTP/1.1).
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return i.leaves.get(name, i.now())
		},
	})
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		return fmt.Errorf("tlsintercept: guest handshake for %s: %w", name, err)
	}
	f := newFlow(i, name, net.JoinHostPort(name, strconv.Itoa(int(port))), dial)
	return f.serve(ctx, tc)
}

// flow is one intercepted guest TLS connection: an http.Server serving that
// one conn, whose handler checks each request and hands it to a
// ReverseProxy with a private Transport dialling the origin.
type flow struct {
	i         *Interceptor
	name      string // the guest's SNI (else the destination): the origin's verified identity
	authority string // name:port
	dial      Dialer
	tr        *http.Transport
	proxy     *httputil.ReverseProxy
	handlers  sync.WaitGroup

	// mu protects err.
	mu  sync.Mutex
	err error // the first *ViolationError
}

// copyBuffers recycles ReverseProxy's body copy buffers across flows.
var copyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }

// substitutedKey marks a request context whose headers carried a secret, so
// its response is scrubbed.
type substitutedKey struct{}

func newFlow(i *Interceptor, name, authority string, dial Dialer) *flow {
	f := &flow{i: i, name: name, authority: authority, dial: dial}
	f.tr = &http.Transport{
		DialTLSContext:         f.dialUpstream,
		DisableCompression:     true, // pass Content-Encoding through untouched
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        idleTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		// A non-nil empty map keeps the Transport on HTTP/1.1.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite:        f.rewrite,
		Transport:      f.tr,
		ErrorHandler:   f.upstreamError,
		ModifyResponse: f.modifyResponse,
		ErrorLog:       log.New(io.Discard, "", 0),
		BufferPool:     copyBuffers,
	}
	return f
}

// dialUpstream opens the origin connection: dial, then TLS verified for
// f.name against the configured roots. Nothing is written before the
// certificate verifies.
func (f *flow) dialUpstream(ctx context.Context, _, _ string) (net.Conn, error) {
	raw, err := f.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", f.authority, err)
	}
	tc := tls.Client(raw, &tls.Config{
		ServerName: f.name,
		RootCAs:    f.i.roots,
		NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12,
		Time:       f.i.now,
	})
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls to %s: %w", f.authority, err)
	}
	return tc, nil
}

// rewrite keeps the outgoing request as the guest wrote it, except for the
// origin's address: ReverseProxy's Rewrite mode would otherwise drop the
// guest's forwarding headers and normalise its query.
func (f *flow) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "https"
	pr.Out.URL.Host = f.authority
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = pr.In.Host
	for _, k := range [...]string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v, ok := pr.In.Header[k]; ok {
			pr.Out.Header[k] = v
		}
	}
}

// hosts returns the names a secret must be allowed for to ride on r: the
// verified SNI and, when it names another host, the Host header (an origin
// behind a shared front end routes by Host).
func (f *flow) hosts(r *http.Request) []string {
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = normalizeHost(h)
	if h == "" || h == f.name {
		return []string{f.name}
	}
	return []string{f.name, h}
}

func (f *flow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.handlers.Add(1)
	defer f.handlers.Done()
	if f.i.terminated.Load() {
		refuse(w, http.StatusForbidden, "msb: sandbox network terminated after a secret violation\n")
		return
	}
	hosts := f.hosts(r)
	ss := f.i.secrets
	k := ss.scan(r.RequestURI, hosts)
	if u, err := url.PathUnescape(r.RequestURI); k < 0 && err == nil {
		k = ss.scan(u, hosts)
	}
	changed := false
	if k < 0 {
		changed, k = ss.rewriteHeader(r.Header, hosts)
	}
	if k >= 0 {
		f.violate(w, hosts, &ss.secrets[k])
		return
	}
	if changed {
		r = r.WithContext(context.WithValue(r.Context(), substitutedKey{}, true))
		// The response is scrubbed for the value (see modifyResponse),
		// which needs an unencoded body.
		r.Header.Set("Accept-Encoding", "identity")
	}
	// A nil Content-Type stops net/http from sniffing one the origin did
	// not send; ReverseProxy appends the origin's, if any.
	w.Header()["Content-Type"] = nil
	f.proxy.ServeHTTP(w, r)
}

func (f *flow) violate(w http.ResponseWriter, hosts []string, s *secret) {
	host := hosts[0]
	for _, h := range hosts {
		if !matchAny(s.hosts, h) {
			host = h
			break
		}
	}
	verr := f.i.report(host, s.env)
	f.mu.Lock()
	if f.err == nil {
		f.err = verr
	}
	f.mu.Unlock()
	refuse(w, http.StatusForbidden, "msb: secret "+s.env+" may not be sent to "+host+"\n")
}

// refuse answers with status and closes the connection after the response.
func refuse(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Connection", "close")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(status)
	io.WriteString(w, msg)
}

func (f *flow) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	f.i.log.Debug("tlsintercept upstream", "host", f.name, "err", err)
	if errors.Is(err, context.Canceled) {
		return // the guest or the sandbox went away
	}
	refuse(w, http.StatusBadGateway, "msb: upstream "+f.authority+": "+err.Error()+"\n")
}

// modifyResponse scrubs secret values from the response to a request that
// carried one: an origin that echoes credentials (debug endpoints, error
// messages) must not hand them to the guest. Encoded bodies, trailers and
// upgraded streams are not scrubbed.
func (f *flow) modifyResponse(res *http.Response) error {
	if res.Request == nil || res.Request.Context().Value(substitutedKey{}) == nil {
		return nil
	}
	ss := f.i.secrets
	for _, vs := range res.Header {
		for j, v := range vs {
			vs[j] = ss.scrubString(v)
		}
	}
	enc := res.Header.Get("Content-Encoding")
	noBody := res.Request.Method == http.MethodHead || res.StatusCode < 200 ||
		res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified
	if !noBody && (enc == "" || enc == "identity") {
		res.Body = newScrubReader(res.Body, ss)
		res.Header.Del("Content-Length")
		res.ContentLength = -1
	}
	return nil
}

// serve runs the HTTP/1.1 server on conn until the guest or the origin ends
// it, or ctx is cancelled, and joins everything it started.
func (f *flow) serve(ctx context.Context, conn net.Conn) error {
	ln := newOneConnListener(conn)
	connDone := make(chan struct{})
	var doneOnce sync.Once
	srv := &http.Server{
		Handler:           f,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				doneOnce.Do(func() { close(connDone) })
				ln.Close()
			}
		},
	}
	// The guest conn is already closed by handleTLS's AfterFunc; the server
	// must also stop so a hijacked (upgraded) conn's copy ends.
	stop := context.AfterFunc(ctx, func() { srv.Close(); conn.Close() })
	defer stop()
	srv.Serve(ln)
	if ln.handedOut() {
		<-connDone
	}
	conn.Close()
	f.handlers.Wait()
	f.tr.CloseIdleConnections()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		if f.i.terminated.Load() {
			return errors.Join(f.err, ErrTerminated)
		}
		return f.err
	}
	return nil
}

// oneConnListener hands one conn to http.Server.Serve, then blocks Accept
// until closed.
type oneConnListener struct {
	addr      net.Addr
	mu        sync.Mutex
	conn      net.Conn // nil once handed out
	gave      bool
	closed    chan struct{}
	closeOnce sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	return &oneConnListener{addr: c.LocalAddr(), conn: c, closed: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		return nil, net.ErrClosed
	default:
	}
	if c := l.conn; c != nil {
		l.conn, l.gave = nil, true
		l.mu.Unlock()
		return c, nil
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) handedOut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gave
}

func (l *oneConnListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }

// splice copies both ways between a and b, propagating half-close, until
// both directions end or ctx is cancelled; it closes both.
func splice(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	var wg sync.WaitGroup
	oneWay := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); err == nil && ok && cw.CloseWrite() == nil {
			return
		}
		a.Close()
		b.Close()
	}
	wg.Go(func() { oneWay(a, b) })
	oneWay(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}
