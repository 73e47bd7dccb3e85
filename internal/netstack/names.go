package netstack

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

const (
	// nameTableSize bounds the (address, name) pairs remembered for domain
	// rules; a guest resolving endlessly evicts its own oldest knowledge,
	// never grows host memory.
	nameTableSize = 4096
	// nameTTLFloor keeps a pair at least this long: answers with TTL 0 are
	// common and the guest connects right after resolving.
	nameTTLFloor = 60 * time.Second
	// nameTTLCeil stops a huge TTL from pinning a pair forever.
	nameTTLCeil = 24 * time.Hour
)

// nameTable remembers which names this sandbox's resolver answered with
// which addresses, so flows can carry Names.
type nameTable struct {
	max int

	// mu protects m and n.
	mu sync.Mutex
	m  map[netip.Addr]map[string]time.Time // addr -> name -> expiry
	n  int                                 // pairs in m
}

func newNameTable(max int) *nameTable {
	return &nameTable{max: max, m: make(map[netip.Addr]map[string]time.Time)}
}

func (t *nameTable) add(ip netip.Addr, name string, ttl time.Duration, now time.Time) {
	ttl = min(max(ttl, nameTTLFloor), nameTTLCeil)
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	names := t.m[ip]
	if _, ok := names[name]; !ok {
		if t.n >= t.max {
			t.evictLocked(now)
		}
		if names == nil {
			names = make(map[string]time.Time)
			t.m[ip] = names
		}
		t.n++
	}
	names[name] = now.Add(ttl)
}

// evictLocked drops expired pairs, then arbitrary ones until there is room.
//
// Preconditions: t.mu is held.
func (t *nameTable) evictLocked(now time.Time) {
	for ip, names := range t.m {
		for name, exp := range names {
			if now.After(exp) {
				delete(names, name)
				t.n--
			}
		}
		if len(names) == 0 {
			delete(t.m, ip)
		}
	}
	for ip, names := range t.m {
		if t.n < t.max {
			return
		}
		t.n -= len(names)
		delete(t.m, ip)
	}
}

// lookup returns the live names for ip, sorted.
func (t *nameTable) lookup(ip netip.Addr, now time.Time) []string {
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for name, exp := range t.m[ip] {
		if !now.After(exp) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
