package tlsintercept

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every name below is fake: the rig's dialers connect to loopback whatever
// the name, and nothing is ever resolved.
const (
	apiHost   = "api.example.test"
	otherHost = "other.example.test"
	apiKey    = "sk-live-0123456789abcdef" // the value under test
	apiEnv    = "API_KEY"
)

var apiPH = Placeholder(apiEnv)

// testCA returns a fresh CA, as LoadOrCreateCA would create.
func testCA(t testing.TB) *CA {
	t.Helper()
	certPEM, keyPEM, err := newCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// serverCert signs a server certificate for names with ca.
func serverCert(t testing.TB, ca *CA, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// seen is one request as the origin received it.
type seen struct {
	Host   string
	Method string
	URI    string
	Header http.Header
	Body   []byte
	TE     []string
}

// origin is a loopback HTTPS server recording what it receives.
type origin struct {
	srv   *httptest.Server
	ca    *CA
	mu    sync.Mutex
	reqs  []seen
	conns atomic.Int32 // TCP connections accepted
}

func newOrigin(t testing.TB) *origin {
	t.Helper()
	o := &origin{ca: testCA(t)}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	o.srv.TLS = &tls.Config{Certificates: []tls.Certificate{
		serverCert(t, o.ca, apiHost, otherHost, "*.svc.example.test", "x.bypass.test"),
	}}
	o.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	o.mu.Lock()
	o.reqs = append(o.reqs, seen{Host: r.Host, Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), Body: body, TE: r.TransferEncoding})
	o.mu.Unlock()
	switch r.URL.Path {
	case "/echo": // a careless debug endpoint: echoes the credentials
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		io.WriteString(w, "you sent: "+r.Header.Get("Authorization"))
	default:
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	}
}

func (o *origin) requests() []seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seen(nil), o.reqs...)
}

// dialer returns a Dialer to the origin's loopback address and a counter of
// calls.
func (o *origin) dialer() (Dialer, *atomic.Int32) {
	var n atomic.Int32
	addr := o.srv.Listener.Addr().String()
	return func(ctx context.Context) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, &n
}

// rig runs an Interceptor behind a loopback listener: each accepted conn is
// a guest flow to dst, handled by Handle (or HandleConnect).
type rig struct {
	t       testing.TB
	ca      *CA
	origin  *origin
	ic      *Interceptor
	ln      net.Listener
	dials   *atomic.Int32
	flows   atomic.Int32
	errs    chan error
	logs    *syncBuffer
	wg      sync.WaitGroup
	connect bool
}

type violation struct{ host, env string }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rigOpt func(*Config)

// newRig starts an Interceptor trusting only the origin's CA, with one
// secret (apiEnv, allowed for apiHost) unless opts change cfg.Secrets.
func newRig(t testing.TB, opts ...rigOpt) (*rig, *[]violation) {
	t.Helper()
	r := &rig{t: t, ca: testCA(t), origin: newOrigin(t), errs: make(chan error, 100), logs: &syncBuffer{}}
	var mu sync.Mutex
	var viols []violation
	cfg := Config{
		CA:               r.ca,
		Secrets:          []Secret{{Env: apiEnv, Value: apiKey, Hosts: []string{apiHost}}},
		UpstreamRoots:    x509.NewCertPool(),
		ExtraUpstreamCAs: []*x509.Certificate{r.origin.ca.cert},
		Violation: func(host, env string) {
			mu.Lock()
			viols = append(viols, violation{host, env})
			mu.Unlock()
		},
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	ic, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.ic = ic
	r.start(r.origin.dialer())
	return r, &viols
}

func (r *rig) start(dial Dialer, n *atomic.Int32) {
	r.dials = n
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	r.ln = ln
	ctx, cancel := context.WithCancel(context.Background())
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.flows.Add(1)
			r.wg.Go(func() {
				var err error
				if r.connect {
					err = r.ic.HandleConnect(ctx, c, "127.0.0.1:3128", dial)
				} else {
					err = r.ic.Handle(ctx, c, "127.0.0.1:443", dial)
				}
				select {
				case r.errs <- err:
				default: // benchmarks run more flows than anyone reads
				}
			})
		}
	})
	r.t.Cleanup(func() {
		ln.Close()
		cancel()
		r.wg.Wait()
	})
}

// pool returns a pool holding only cas.
func pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c.cert)
	}
	return p
}

// client is a guest HTTP client trusting only the interception CA; every
// connection goes to the rig whatever the URL's host.
func (r *rig) client(mod ...func(*tls.Config)) *http.Client {
	tc := &tls.Config{RootCAs: pool(r.ca)}
	for _, m := range mod {
		m(tc)
	}
	tr := &http.Transport{
		TLSClientConfig: tc,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", r.ln.Addr().String())
		},
		DisableCompression: true,
	}
	r.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends req and returns status and body; err covers transport failures.
func do(c *http.Client, req *http.Request) (int, http.Header, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// flowErr waits for the next finished flow's result.
func (r *rig) flowErr() error {
	select {
	case err := <-r.errs:
		return err
	case <-time.After(10 * time.Second):
		r.t.Fatal("no flow finished")
		return nil
	}
}
