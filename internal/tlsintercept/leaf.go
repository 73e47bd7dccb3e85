package tlsintercept

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"sync"
	"time"
)

const (
	// leafTTL is how long a minted leaf is reused. Leaves are valid for
	// leafValidity from minting, so a cached leaf always has days left.
	leafTTL      = 24 * time.Hour
	leafValidity = 7 * 24 * time.Hour
)

// mint signs a leaf for name (a DNS name or an IP literal) valid from
// now-clockSkew, never past the CA's own expiry.
func (c *CA) mint(name string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mint leaf: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafValidity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, fmt.Errorf("mint leaf for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mint leaf for %q: %w", name, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// leafCache is a bounded LRU of minted leaves, each reused for at most ttl.
// It is safe for concurrent use; two goroutines missing on the same name may
// both mint, and the later one wins, which is harmless.
type leafCache struct {
	ca   *CA
	size int
	ttl  time.Duration

	// mu protects ll and byName.
	mu     sync.Mutex
	ll     *list.List // of *leafEntry, most recently used first
	byName map[string]*list.Element
}

type leafEntry struct {
	name    string
	cert    *tls.Certificate
	expires time.Time
}

func newLeafCache(ca *CA, size int, ttl time.Duration) *leafCache {
	return &leafCache{ca: ca, size: size, ttl: ttl, ll: list.New(), byName: make(map[string]*list.Element)}
}

// get returns a leaf for name, minting one on a miss or an expired entry.
func (lc *leafCache) get(name string, now time.Time) (*tls.Certificate, error) {
	lc.mu.Lock()
	if e, ok := lc.byName[name]; ok {
		ent := e.Value.(*leafEntry)
		if now.Before(ent.expires) {
			lc.ll.MoveToFront(e)
			lc.mu.Unlock()
			return ent.cert, nil
		}
		lc.ll.Remove(e)
		delete(lc.byName, name)
	}
	lc.mu.Unlock()

	cert, err := lc.ca.mint(name, now)
	if err != nil {
		return nil, err
	}

	lc.mu.Lock()
	defer lc.mu.Unlock()
	if e, ok := lc.byName[name]; ok {
		lc.ll.Remove(e)
	}
	lc.byName[name] = lc.ll.PushFront(&leafEntry{name: name, cert: cert, expires: now.Add(lc.ttl)})
	for lc.ll.Len() > lc.size {
		old := lc.ll.Back()
		lc.ll.Remove(old)
		delete(lc.byName, old.Value.(*leafEntry).name)
	}
	return cert, nil
}

// len reports the number of cached leaves.
func (lc *leafCache) len() int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.ll.Len()
}
