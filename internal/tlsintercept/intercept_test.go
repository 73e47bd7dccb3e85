package tlsintercept

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSubstitution(t *testing.T) {
	second := Secret{Env: "API_KEY_2", Value: "second-value", Hosts: []string{"*.svc.example.test"}}
	r, viols := newRig(t, func(c *Config) { c.Secrets = append(c.Secrets, second) })
	c := r.client()
	tests := []struct {
		name   string
		url    string
		set    func(h *http.Request)
		header string // header to check at the origin
		want   string
	}{
		{"bearer", "https://" + apiHost + "/v1", func(q *http.Request) {
			q.Header.Set("Authorization", "Bearer "+apiPH)
		}, "Authorization", "Bearer " + apiKey},
		{"basic auth", "https://" + apiHost + "/", func(q *http.Request) {
			q.SetBasicAuth("user", apiPH)
		}, "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+apiKey))},
		{"custom header", "https://" + apiHost + "/", func(q *http.Request) {
			q.Header.Set("X-Api-Key", apiPH)
		}, "X-Api-Key", apiKey},
		{"placeholder twice in one value", "https://" + apiHost + "/", func(q *http.Request) {
			q.Header.Set("X-Pair", apiPH+","+apiPH)
		}, "X-Pair", apiKey + "," + apiKey},
		{"longest placeholder wins", "https://a.svc.example.test/", func(q *http.Request) {
			q.Header.Set("X-Key", Placeholder("API_KEY_2"))
		}, "X-Key", "second-value"},
		{"uppercase host", "https://API.Example.TEST/", func(q *http.Request) {
			q.Header.Set("X-Api-Key", apiPH)
		}, "X-Api-Key", apiKey},
		{"no placeholder", "https://" + otherHost + "/", func(q *http.Request) {
			q.Header.Set("Authorization", "Bearer mine")
		}, "Authorization", "Bearer mine"},
		{"unrelated dollar", "https://" + otherHost + "/", func(q *http.Request) {
			q.Header.Set("X-Price", "$5 $MSB_ $MSB_UNKNOWN")
		}, "X-Price", "$5 $MSB_ $MSB_UNKNOWN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.origin.requests())
			req, _ := http.NewRequest("GET", tc.url, nil)
			tc.set(req)
			status, _, _, err := do(c, req)
			if err != nil || status != 200 {
				t.Fatalf("status %d, err %v; want 200", status, err)
			}
			reqs := r.origin.requests()
			if len(reqs) != before+1 {
				t.Fatalf("origin saw %d requests; want %d", len(reqs), before+1)
			}
			if got := reqs[before].Header.Get(tc.header); got != tc.want {
				t.Errorf("origin %s = %q; want %q", tc.header, got, tc.want)
			}
		})
	}
	if len(*viols) != 0 {
		t.Errorf("violations %v; want none", *viols)
	}
}

func TestViolation(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		set      func(q *http.Request)
		wantHost string
	}{
		{"bearer to other host", "https://" + otherHost + "/", func(q *http.Request) {
			q.Header.Set("Authorization", "Bearer "+apiPH)
		}, otherHost},
		{"basic auth to other host", "https://" + otherHost + "/", func(q *http.Request) {
			q.SetBasicAuth(apiPH, "x")
		}, otherHost},
		{"header name", "https://" + otherHost + "/", func(q *http.Request) {
			q.Header["X-"+apiPH] = []string{"1"}
		}, otherHost},
		{"query", "https://" + otherHost + "/?key=" + apiPH, func(*http.Request) {}, otherHost},
		{"percent-encoded path", "https://" + otherHost + "/%24MSB_API_KEY", func(*http.Request) {}, otherHost},
		{"allowed SNI, other Host header", "https://" + apiHost + "/", func(q *http.Request) {
			q.Host = "evil.example.test"
			q.Header.Set("X-Api-Key", apiPH)
		}, "evil.example.test"},
		{"suffix is not the apex", "https://api.example.test.evil.test/", func(q *http.Request) {
			q.Header.Set("X-Api-Key", apiPH)
		}, "api.example.test.evil.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, viols := newRig(t)
			req, _ := http.NewRequest("GET", tc.url, nil)
			tc.set(req)
			status, _, body, err := do(r.client(), req)
			if err != nil || status != http.StatusForbidden {
				t.Fatalf("status %d, err %v; want 403", status, err)
			}
			if strings.Contains(body, apiKey) {
				t.Errorf("403 body %q holds the value", body)
			}
			if n := r.dials.Load(); n != 0 {
				t.Errorf("origin dialled %d times; want 0", n)
			}
			if got := r.origin.requests(); len(got) != 0 {
				t.Errorf("origin saw %d requests; want 0", len(got))
			}
			want := []violation{{tc.wantHost, apiEnv}}
			if !slices.Equal(*viols, want) {
				t.Errorf("violations %v; want %v", *viols, want)
			}
			var verr *ViolationError
			if err := r.flowErr(); !errors.As(err, &verr) || verr.Host != tc.wantHost || verr.Env != apiEnv {
				t.Errorf("Handle = %v; want *ViolationError{%s, %s}", err, tc.wantHost, apiEnv)
			}
		})
	}
}

func TestViolationActions(t *testing.T) {
	for _, action := range []Action{BlockAndLog, Block, BlockAndTerminate} {
		t.Run(action.String(), func(t *testing.T) {
			r, viols := newRig(t, func(c *Config) { c.OnViolation = action })
			c := r.client()
			req, _ := http.NewRequest("GET", "https://"+otherHost+"/", nil)
			req.Header.Set("X-Api-Key", apiPH)
			if status, _, _, err := do(c, req); status != http.StatusForbidden {
				t.Fatalf("status %d, err %v; want 403", status, err)
			}
			err := r.flowErr()
			logged := strings.Contains(r.logs.String(), "env="+apiEnv)
			if want := action != Block; logged != want {
				t.Errorf("logged = %v; want %v; log:\n%s", logged, want, r.logs)
			}
			if len(*viols) != 1 {
				t.Errorf("Violation called %d times; want 1", len(*viols))
			}
			// A clean request afterwards works unless the sandbox is being
			// terminated.
			req, _ = http.NewRequest("GET", "https://"+apiHost+"/", nil)
			status, _, _, _ := do(c, req)
			if action == BlockAndTerminate {
				next := r.flowErr()
				if !errors.Is(err, ErrTerminated) || !errors.Is(next, ErrTerminated) || status == 200 {
					t.Errorf("after terminate: first %v, next %v, status %d; want ErrTerminated twice and no 200", err, next, status)
				}
				return
			}
			if status != 200 || errors.Is(err, ErrTerminated) {
				t.Errorf("after %v: status %d, err %v; want 200", action, status, err)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	r, _ := newRig(t)
	c := r.client()
	for i := range 2 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/%d", apiHost, i), nil)
		req.Header.Set("Authorization", "Bearer "+apiPH)
		if status, _, _, err := do(c, req); status != 200 || err != nil {
			t.Fatalf("request %d: status %d, err %v", i, status, err)
		}
	}
	reqs := r.origin.requests()
	if len(reqs) != 2 || reqs[1].Header.Get("Authorization") != "Bearer "+apiKey {
		t.Fatalf("origin saw %+v; want two substituted requests", reqs)
	}
	if f, d, oc := r.flows.Load(), r.dials.Load(), r.origin.conns.Load(); f != 1 || d != 1 || oc != 1 {
		t.Errorf("guest flows %d, dials %d, origin conns %d; want 1 each", f, d, oc)
	}
	// The third request on the same connection is checked too.
	req, _ := http.NewRequest("GET", "https://"+apiHost+"/", nil)
	req.Host = otherHost
	req.Header.Set("Authorization", "Bearer "+apiPH)
	if status, _, _, _ := do(c, req); status != http.StatusForbidden {
		t.Errorf("third request status %d; want 403", status)
	}
	if f := r.flows.Load(); f != 1 {
		t.Errorf("guest flows %d; want 1", f)
	}
}

// unsized hides a reader's length so net/http sends it chunked.
type unsized struct{ io.Reader }

func TestBodies(t *testing.T) {
	r, _ := newRig(t)
	c := r.client()
	big := strings.Repeat("0123456789abcdef", 20000) // 320 KB, several chunks
	tests := []struct {
		name    string
		body    io.Reader
		want    string
		chunked bool
	}{
		{"content-length", strings.NewReader(big), big, false},
		{"chunked", unsized{strings.NewReader(big)}, big, true},
		{"placeholder in body is untouched", strings.NewReader(apiPH), apiPH, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.origin.requests())
			req, _ := http.NewRequest("POST", "https://"+apiHost+"/upload", tc.body)
			req.Header.Set("Authorization", "Bearer "+apiPH)
			if status, _, _, err := do(c, req); status != 200 || err != nil {
				t.Fatalf("status %d, err %v", status, err)
			}
			got := r.origin.requests()[before]
			if string(got.Body) != tc.want {
				t.Errorf("origin body: %d bytes; want %d", len(got.Body), len(tc.want))
			}
			if isChunked := slices.Contains(got.TE, "chunked"); isChunked != tc.chunked {
				t.Errorf("origin Transfer-Encoding %v; chunked want %v", got.TE, tc.chunked)
			}
		})
	}
}

func TestResponseScrubbed(t *testing.T) {
	r, _ := newRig(t)
	req, _ := http.NewRequest("GET", "https://"+apiHost+"/echo", nil)
	req.Header.Set("Authorization", "Bearer "+apiPH)
	status, h, body, err := do(r.client(), req)
	if status != 200 || err != nil {
		t.Fatalf("status %d, err %v", status, err)
	}
	if got := r.origin.requests()[0].Header.Get("Authorization"); got != "Bearer "+apiKey {
		t.Fatalf("origin Authorization %q; want the value", got)
	}
	if want := "Bearer " + apiPH; h.Get("X-Echo") != want || body != "you sent: "+want {
		t.Errorf("guest saw X-Echo %q, body %q; want the placeholder back", h.Get("X-Echo"), body)
	}
	if got := r.origin.requests()[0].Header.Get("Accept-Encoding"); got != "identity" {
		t.Errorf("origin Accept-Encoding %q; want identity", got)
	}
}

func TestValueNeverLogged(t *testing.T) {
	r, _ := newRig(t)
	c := r.client()
	for _, u := range []string{apiHost + "/echo", otherHost + "/"} {
		req, _ := http.NewRequest("GET", "https://"+u, nil)
		req.Header.Set("Authorization", "Bearer "+apiPH)
		do(c, req)
	}
	bad, _ := newRig(t, func(c *Config) { c.UpstreamRoots, c.ExtraUpstreamCAs = nil, nil })
	req, _ := http.NewRequest("GET", "https://"+apiHost+"/", nil)
	req.Header.Set("Authorization", "Bearer "+apiPH)
	do(bad.client(), req)
	for _, rr := range []*rig{r, bad} {
		rr.ln.Close()
		logs := rr.logs.String()
		if logs == "" {
			t.Error("nothing logged; the test proves nothing")
		}
		if strings.Contains(logs, apiKey) {
			t.Errorf("log holds the secret value:\n%s", logs)
		}
	}
}

func TestUpstreamUntrusted(t *testing.T) {
	// The origin's CA is not trusted: the system pool and no extras.
	r, _ := newRig(t, func(c *Config) { c.UpstreamRoots, c.ExtraUpstreamCAs = pool(testCA(t)), nil })
	req, _ := http.NewRequest("POST", "https://"+apiHost+"/", strings.NewReader("payload"))
	req.Header.Set("Authorization", "Bearer "+apiPH)
	status, _, body, err := do(r.client(), req)
	if status != http.StatusBadGateway || err != nil {
		t.Fatalf("status %d, err %v; want 502", status, err)
	}
	if !strings.Contains(body, "certificate") {
		t.Errorf("502 body %q does not say why", body)
	}
	if got := r.origin.requests(); len(got) != 0 {
		t.Errorf("origin saw %d requests; want 0", len(got))
	}
}

func TestBypass(t *testing.T) {
	r, _ := newRig(t, func(c *Config) { c.Bypass = []string{"*.bypass.test", apiHost} })
	tests := []struct {
		name        string
		sni         string
		trust       *CA
		intercepted bool
	}{
		{"bypassed host reaches the origin untouched", "x.bypass.test", r.origin.ca, false},
		{"bypassed host is not re-signed", "x.bypass.test", r.ca, false},
		{"secret host beats bypass", apiHost, r.ca, true},
		{"other host intercepted", otherHost, r.ca, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", r.ln.Addr().String(), &tls.Config{ServerName: tc.sni, RootCAs: pool(tc.trust)})
			ok := err == nil
			if ok {
				leaf := conn.ConnectionState().PeerCertificates[0]
				if got := bytes.Equal(leaf.AuthorityKeyId, r.ca.cert.SubjectKeyId); got != tc.intercepted {
					t.Errorf("leaf signed by the interception CA = %v, want %v", got, tc.intercepted)
				}
				conn.Close()
			}
			if want := tc.trust == r.ca == tc.intercepted; ok != want {
				t.Errorf("handshake err %v; want success %v", err, want)
			}
			r.flowErr()
		})
	}
}

func TestIntercepts(t *testing.T) {
	ic, err := New(Config{
		CA:      testCA(t),
		Secrets: []Secret{{Env: apiEnv, Value: apiKey, Hosts: []string{"*.example.test"}}},
		Ports:   []uint16{443, 8443},
		Bypass:  []string{"*.example.test", "bank.test", "10.0.0.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		port uint16
		want bool
	}{
		{"93.184.216.34", 443, true},
		{"93.184.216.34", 80, false},
		{"x.test", 8443, true},
		{"bank.test", 443, false},
		{"BANK.test.", 443, false},
		{"a.bank.test", 443, true},
		{"10.0.0.1", 443, false},
		{"api.example.test", 443, true}, // a secret's host beats the bypass
		{"api.example.test", 22, false},
	}
	for _, tc := range tests {
		if got := ic.Intercepts(tc.host, tc.port); got != tc.want {
			t.Errorf("Intercepts(%q, %d) = %v; want %v", tc.host, tc.port, got, tc.want)
		}
	}
}

func TestLeafClockSkew(t *testing.T) {
	now := time.Now()
	r, _ := newRig(t, func(c *Config) { c.Now = func() time.Time { return now } })
	tests := []struct {
		name   string
		behind time.Duration
		ok     bool
	}{
		{"in sync", 0, true},
		{"guest a day behind", 24 * time.Hour, true},
		{"guest two days behind", 48 * time.Hour, false},
		{"guest six days ahead", -6 * 24 * time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			guestNow := now.Add(-tc.behind)
			conn, err := tls.Dial("tcp", r.ln.Addr().String(), &tls.Config{
				ServerName: apiHost, RootCAs: pool(r.ca), Time: func() time.Time { return guestNow },
			})
			if (err == nil) != tc.ok {
				t.Errorf("handshake with the guest clock %v behind: err %v; want ok %v", tc.behind, err, tc.ok)
			}
			if err == nil {
				conn.Close()
			}
			r.flowErr()
		})
	}
}

func TestLeafCache(t *testing.T) {
	now := time.Now()
	r, _ := newRig(t, func(c *Config) {
		c.LeafCacheSize = 3
		c.Now = func() time.Time { return now }
	})
	serial := func(name string) string {
		t.Helper()
		conn, err := tls.Dial("tcp", r.ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: pool(r.ca), Time: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("handshake %s: %v", name, err)
		}
		defer func() { conn.Close(); r.flowErr() }()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial("h0.test")
	if again := serial("h0.test"); again != first {
		t.Errorf("second handshake got a new leaf; want the cached one")
	}
	var last string
	for i := 1; i < 6; i++ {
		last = serial(fmt.Sprintf("h%d.test", i))
	}
	if n := r.ic.LeafCacheLen(); n != 3 {
		t.Errorf("cache holds %d leaves; want 3", n)
	}
	if again := serial("h0.test"); again == first {
		t.Errorf("evicted leaf came back; want a new one")
	}
	now = now.Add(leafTTL + time.Minute)
	if got := serial("h5.test"); got == last {
		t.Error("leaf reused past its TTL")
	}
}

func TestLeafExpiresFromCache(t *testing.T) {
	ca := testCA(t)
	lc := newLeafCache(ca, 10, leafTTL)
	now := time.Now()
	a, err := lc.get("a.test", now)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := lc.get("a.test", now.Add(leafTTL-time.Minute)); b != a {
		t.Error("leaf re-minted before its TTL")
	}
	if b, _ := lc.get("a.test", now.Add(leafTTL+time.Minute)); b == a {
		t.Error("leaf reused past its TTL")
	}
	ip, err := lc.get("127.0.0.1", now)
	if err != nil || len(ip.Leaf.IPAddresses) != 1 || len(ip.Leaf.DNSNames) != 0 {
		t.Errorf("IP leaf: %v, %v; want one IP SAN", ip.Leaf.IPAddresses, err)
	}
	if nb := a.Leaf.NotBefore; nb.After(now.Add(-clockSkew + time.Second)) {
		t.Errorf("leaf NotBefore %v not backdated a day from %v", nb, now)
	}
}

func TestConnect(t *testing.T) {
	r, viols := newRig(t)
	r.connect = true
	// A loopback HTTP proxy recording CONNECT targets, tunnelling to the
	// origin whatever the target.
	px := newProxy(t, r.origin.srv.Listener.Addr().String())
	r.ln.Close()
	r.wg.Wait()
	r.start(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", px.ln.Addr().String())
	}, r.dials)

	proxied := r.client()
	tr := proxied.Transport.(*http.Transport)
	tr.Proxy = func(*http.Request) (*url.URL, error) { return &url.URL{Scheme: "http", Host: "proxy.test:3128"}, nil }

	req, _ := http.NewRequest("GET", "https://"+apiHost+"/", nil)
	req.Header.Set("Authorization", "Bearer "+apiPH)
	if status, _, _, err := do(proxied, req); status != 200 || err != nil {
		t.Fatalf("status %d, err %v", status, err)
	}
	if got := r.origin.requests()[0].Header.Get("Authorization"); got != "Bearer "+apiKey {
		t.Errorf("origin Authorization %q; want the value", got)
	}
	if got := px.targets(); !slices.Equal(got, []string{apiHost + ":443"}) {
		t.Errorf("proxy saw CONNECT %v", got)
	}

	req, _ = http.NewRequest("GET", "https://"+otherHost+"/", nil)
	req.Header.Set("Authorization", "Bearer "+apiPH)
	if status, _, _, err := do(proxied, req); status != http.StatusForbidden {
		t.Fatalf("status %d, err %v; want 403", status, err)
	}
	if len(r.origin.requests()) != 1 || len(*viols) != 1 {
		t.Errorf("origin requests %d, violations %v; want 1 and one", len(r.origin.requests()), *viols)
	}

	// A placeholder in the CONNECT head itself (Proxy-Authorization) has
	// no verified identity to go to.
	conn, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\nProxy-Authorization: Basic %s\r\n\r\n",
		apiHost, apiHost, base64.StdEncoding.EncodeToString([]byte("u:"+apiPH)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT with a placeholder: %v, %v; want 403", resp, err)
	}
	if got := px.targets(); len(got) != 2 {
		t.Errorf("proxy saw CONNECT %v; want two", got)
	}
}

func TestConnectRefused(t *testing.T) {
	r, _ := newRig(t)
	r.connect = true
	px := newProxy(t, r.origin.srv.Listener.Addr().String())
	px.refuse = true
	r.ln.Close()
	r.wg.Wait()
	r.start(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", px.ln.Addr().String())
	}, r.dials)
	conn, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", apiHost, apiHost)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("got %v, %v; want the proxy's 407", resp, err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "auth please" {
		t.Errorf("407 body %q", b)
	}
}

func TestMalformedRequests(t *testing.T) {
	r, _ := newRig(t)
	tests := []struct {
		name string
		send string
		want int
	}{
		{"garbage request line", "NOT HTTP\r\n\r\n", 400},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: " + apiHost + "\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
		{"bad header line", "GET / HTTP/1.1\r\nHost: " + apiHost + "\r\nno colon\r\n\r\n", 400},
		{"conflicting content-lengths", "POST / HTTP/1.1\r\nHost: " + apiHost + "\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", r.ln.Addr().String(), &tls.Config{ServerName: apiHost, RootCAs: pool(r.ca)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			go io.WriteString(conn, tc.send)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil || resp.StatusCode != tc.want {
				t.Fatalf("response %v, %v; want %d", resp, err, tc.want)
			}
			r.flowErr()
		})
	}
	if got := r.origin.requests(); len(got) != 0 {
		t.Errorf("origin saw %d requests; want 0", len(got))
	}
}

func TestNotTLS(t *testing.T) {
	r, _ := newRig(t)
	conn, err := net.Dial("tcp", r.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n", apiPH)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if len(b) != 0 {
		t.Errorf("guest got %q; want nothing", b)
	}
	if err := r.flowErr(); err == nil {
		t.Error("Handle = nil; want an error")
	}
	if r.dials.Load() != 0 {
		t.Error("origin dialled for a non-TLS flow")
	}
}

// TestHTTP2 checks that a guest speaking HTTP/2 gets the same substitution and
// the same blocking as HTTP/1.1: the guest side negotiates h2, the
// origin still gets HTTP/1.1 with the real value.
func TestHTTP2(t *testing.T) {
	r, viols := newRig(t)
	c := r.client(func(tc *tls.Config) { tc.NextProtos = []string{"h2", "http/1.1"} })
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true

	req, _ := http.NewRequest("GET", "https://"+apiHost+"/h2", nil)
	req.Header.Set("Authorization", "Bearer "+Placeholder(apiEnv))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("guest spoke %s; want HTTP/2", resp.Proto)
	}
	reqs := r.origin.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer "+apiKey {
		t.Fatalf("origin got %d requests; want one with the real value", len(reqs))
	}

	// A placeholder to another host over HTTP/2 is blocked too.
	bad, _ := http.NewRequest("GET", "https://"+apiHost+"/h2", nil)
	bad.Host = "other.example"
	bad.Header.Set("Authorization", "Bearer "+Placeholder(apiEnv))
	resp, err = c.Do(bad)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("placeholder to another host over HTTP/2: status %d; want 403", resp.StatusCode)
		}
	}
	if len(r.origin.requests()) != 1 {
		t.Error("the blocked HTTP/2 request reached the origin")
	}
	if len(*viols) == 0 {
		t.Error("no violation reported for the blocked HTTP/2 request")
	}
}

func TestContextCancelEndsFlow(t *testing.T) {
	ic, err := New(Config{CA: testCA(t), UpstreamRoots: x509.NewCertPool()})
	if err != nil {
		t.Fatal(err)
	}
	g, h := net.Pipe()
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ic.Handle(ctx, h, "127.0.0.1:443", func(context.Context) (net.Conn, error) { return nil, errors.New("no") })
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Handle did not return after cancel")
	}
}

// TestNoSNI covers a guest dialling an IP: no SNI, so the destination IP is
// the identity the leaf is minted for and the origin is verified against.
func TestNoSNI(t *testing.T) {
	r, viols := newRig(t, func(c *Config) {
		c.Secrets = append(c.Secrets, Secret{Env: "IP_KEY", Value: "ip-value", Hosts: []string{"127.0.0.1"}})
	})
	c := r.client()
	tests := []struct {
		header, value string
		status        int
		want          string
	}{
		{"X-Ip-Key", Placeholder("IP_KEY"), 200, "ip-value"},
		{"X-Api-Key", apiPH, 403, ""},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest("GET", "https://127.0.0.1/", nil)
		req.Header.Set(tc.header, tc.value)
		status, _, _, err := do(c, req)
		if status != tc.status || err != nil {
			t.Fatalf("%s: status %d, err %v; want %d", tc.header, status, err, tc.status)
		}
		if tc.status == 200 {
			if got := r.origin.requests()[0].Header.Get(tc.header); got != tc.want {
				t.Errorf("origin %s = %q; want %q", tc.header, got, tc.want)
			}
		}
	}
	if want := []violation{{"127.0.0.1", apiEnv}}; !slices.Equal(*viols, want) {
		t.Errorf("violations %v; want %v", *viols, want)
	}
}
