package image

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
)

// isLoopback reports whether a registry host[:port] is on this machine, the
// only place plain HTTP is allowed without Options.Insecure.
func isLoopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allowHTTP reports whether plain HTTP may be used for registry.
func (s *Store) allowHTTP(registry string) bool {
	return isLoopback(registry) || slices.Contains(s.opts.Insecure, registry)
}

// httpGuard refuses plain-HTTP requests to hosts that may not have them:
// ggcr itself falls back to HTTP for RFC 1918 addresses, and a registry's
// redirect could point anywhere.
type httpGuard struct {
	allow func(host string) bool
	next  http.RoundTripper
}

func (g httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allow(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s: %w (add it to the insecure registries to allow)", req.URL.Host, ErrInsecure)
	}
	return g.next.RoundTrip(req)
}

// baseTransport builds the unauthenticated transport: Options.Transport or
// a clone of http.DefaultTransport trusting the system roots plus
// Options.CAFiles, wrapped in httpGuard.
func (s *Store) baseTransport() (http.RoundTripper, error) {
	s.transportOnce.Do(func() {
		next := s.opts.Transport
		if next == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			if len(s.opts.CAFiles) > 0 {
				pool, err := x509.SystemCertPool()
				if err != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				for _, f := range s.opts.CAFiles {
					pem, err := os.ReadFile(f)
					if err != nil {
						s.transportErr = fmt.Errorf("load CA file: %w", err)
						return
					}
					if !pool.AppendCertsFromPEM(pem) {
						s.transportErr = fmt.Errorf("load CA file %s: no PEM certificate in it", f)
						return
					}
				}
				t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			next = t
		}
		s.transport = httpGuard{allow: s.allowHTTP, next: next}
	})
	return s.transport, s.transportErr
}
