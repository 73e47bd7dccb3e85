package tlsintercept

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The benchmarks compare one keep-alive HTTPS GET from a guest client
// through the interceptor (secret substituted) with the same GET straight
// to the same loopback origin.

func benchGet(b *testing.B, c *http.Client, header string) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("GET", "https://"+apiHost+"/", nil)
		req.Header.Set("Authorization", header)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

func BenchmarkInterceptedRequest(b *testing.B) {
	r, _ := newRig(b)
	benchGet(b, r.client(), "Bearer "+apiPH)
}

func BenchmarkDirectRequest(b *testing.B) {
	o := newOrigin(b)
	addr := o.srv.Listener.Addr().String()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool(o.ca)},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		DisableCompression: true,
	}
	b.Cleanup(tr.CloseIdleConnections)
	benchGet(b, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "Bearer "+apiKey)
}

// BenchmarkFirstHandshake is a guest's first TLS handshake to a host the
// interceptor has not seen: ClientHello peek, leaf minting, handshake.
func BenchmarkFirstHandshake(b *testing.B) {
	r, _ := newRig(b, func(c *Config) { c.LeafCacheSize = 1 << 20 })
	addr := r.ln.Addr().String()
	roots := pool(r.ca)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: fmt.Sprintf("h%d.test", n), RootCAs: roots})
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

// BenchmarkCachedHandshake is the same handshake with the leaf cached.
func BenchmarkCachedHandshake(b *testing.B) {
	r, _ := newRig(b)
	addr := r.ln.Addr().String()
	roots := pool(r.ca)
	b.ReportAllocs()
	for b.Loop() {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: apiHost, RootCAs: roots})
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

// BenchmarkDirectHandshake is a full TLS handshake to the origin itself, the
// baseline for the two above.
func BenchmarkDirectHandshake(b *testing.B) {
	o := newOrigin(b)
	addr := o.srv.Listener.Addr().String()
	roots := pool(o.ca)
	b.ReportAllocs()
	for b.Loop() {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: apiHost, RootCAs: roots})
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
	}
}

// BenchmarkMint is minting one leaf.
func BenchmarkMint(b *testing.B) {
	ca := testCA(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.mint("h.test", now); err != nil {
			b.Fatal(err)
		}
	}
}
