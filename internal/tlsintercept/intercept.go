package tlsintercept

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Action is what happens after a violation: a request carrying a placeholder
// to a host its secret is not allowed for. The request is always blocked (403
// to the guest, connection closed, never forwarded).
type Action int

const (
	// BlockAndLog blocks and logs host and Env at warning level. It is the
	// zero value and microsandbox's default.
	BlockAndLog Action = iota
	// Block blocks silently (Config.Violation is still called).
	Block
	// BlockAndTerminate blocks, logs, and refuses every later flow; the
	// caller ends the sandbox from Config.Violation or on the
	// *ViolationError that Handle returns.
	BlockAndTerminate
)

func (a Action) String() string {
	switch a {
	case BlockAndLog:
		return "block-and-log"
	case Block:
		return "block"
	case BlockAndTerminate:
		return "block-and-terminate"
	default:
		return "Action(" + strconv.Itoa(int(a)) + ")"
	}
}

// ErrTerminated is returned by Handle and HandleConnect once a violation
// under BlockAndTerminate has happened: the interceptor drops every flow.
var ErrTerminated = errors.New("tlsintercept: sandbox terminated after a secret violation")

// ViolationError is returned by Handle and HandleConnect when they blocked a
// request. It names the secret by Env, never by value.
type ViolationError struct {
	Host   string // the host the placeholder was headed to
	Env    string // the secret's Env
	Action Action
}

func (e *ViolationError) Error() string {
	return "secret " + e.Env + " placeholder sent to disallowed host " + strconv.Quote(e.Host) + " (" + e.Action.String() + ")"
}

// Config configures an Interceptor. Only CA is required.
type Config struct {
	CA      *CA
	Secrets []Secret
	// Ports are the destination ports whose TLS is intercepted; nil means
	// [443].
	Ports []uint16
	// Bypass lists hosts never intercepted (exact, "*.suffix" or "*"),
	// matched against the SNI. A host some secret allows is intercepted
	// even when it matches Bypass, so the secret still reaches it.
	Bypass []string
	// UpstreamRoots verifies origins; nil means the host's system roots.
	UpstreamRoots *x509.CertPool
	// ExtraUpstreamCAs are trusted for origins in addition to UpstreamRoots.
	ExtraUpstreamCAs []*x509.Certificate
	OnViolation      Action
	// Violation, if set, is called once per blocked request, before the
	// guest sees the 403, from the goroutine running Handle.
	Violation func(host, env string)
	// Now is the clock for minting and upstream verification; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives violations (warn) and per-flow failures (debug); nil
	// discards. Secret values are never logged.
	Logger *slog.Logger
	// LeafCacheSize bounds the minted-leaf cache (entries live 24 h); 0
	// means 1000.
	LeafCacheSize int
}

// Interceptor terminates guest TLS, substitutes secrets and re-originates
// the requests to the real origin. It is safe for concurrent use: the network
// stack calls Handle or HandleConnect once per flow, from any goroutine.
type Interceptor struct {
	ca        *CA
	secrets   *secretSet
	ports     []uint16
	bypass    []hostPattern
	roots     *x509.CertPool
	action    Action
	violation func(host, env string)
	now       func() time.Time
	log       *slog.Logger
	leaves    *leafCache

	terminated atomic.Bool
	// violationMu serialises Config.Violation calls.
	violationMu sync.Mutex
}

// New validates cfg and returns an Interceptor. Secrets are checked for empty
// or duplicate names and placeholders, bad host patterns, and values that
// cannot sit in a header; errors never quote a value.
func New(cfg Config) (*Interceptor, error) {
	if cfg.CA == nil {
		return nil, errors.New("tlsintercept: nil CA")
	}
	ss, err := newSecretSet(cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("tlsintercept: %w", err)
	}
	i := &Interceptor{
		ca:        cfg.CA,
		secrets:   ss,
		ports:     slices.Clone(cfg.Ports),
		action:    cfg.OnViolation,
		violation: cfg.Violation,
		now:       cfg.Now,
		log:       cfg.Logger,
	}
	if len(i.ports) == 0 {
		i.ports = []uint16{443}
	}
	if i.action < BlockAndLog || i.action > BlockAndTerminate {
		return nil, fmt.Errorf("tlsintercept: unknown %v", i.action)
	}
	for _, b := range cfg.Bypass {
		p, err := parsePattern(b)
		if err != nil {
			return nil, fmt.Errorf("tlsintercept: bypass: %w", err)
		}
		i.bypass = append(i.bypass, p)
	}
	i.roots = cfg.UpstreamRoots
	if i.roots == nil {
		if i.roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("tlsintercept: system roots: %w", err)
		}
	} else if len(cfg.ExtraUpstreamCAs) > 0 {
		i.roots = i.roots.Clone()
	}
	for _, c := range cfg.ExtraUpstreamCAs {
		i.roots.AddCert(c)
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.log == nil {
		i.log = slog.New(slog.DiscardHandler)
	}
	size := cfg.LeafCacheSize
	if size <= 0 {
		size = 1000
	}
	i.leaves = newLeafCache(cfg.CA, size, leafTTL)
	return i, nil
}

// Intercepts reports whether a TCP flow to host (an SNI, a name the guest
// resolved, or the destination IP) and port goes through Handle: port is an
// intercepted port and host is not bypassed, or some secret allows host.
// With only an IP at SYN time the answer is "yes" for every intercepted port;
// Handle then reads the SNI and splices bypassed hosts through untouched.
func (i *Interceptor) Intercepts(host string, port uint16) bool {
	if !slices.Contains(i.ports, port) {
		return false
	}
	host = normalizeHost(host)
	return i.secretHost(host) || !matchAny(i.bypass, host)
}

// secretHost reports whether some secret may be sent to host.
func (i *Interceptor) secretHost(host string) bool {
	for k := range i.secrets.secrets {
		if matchAny(i.secrets.secrets[k].hosts, host) {
			return true
		}
	}
	return false
}

// report handles a violation: callback, log, terminate. It returns the
// error Handle returns.
func (i *Interceptor) report(host, env string) *ViolationError {
	if i.action == BlockAndTerminate {
		i.terminated.Store(true)
	}
	if i.action != Block {
		i.log.Warn("secret placeholder sent to a disallowed host; request blocked",
			"host", host, "env", env, "action", i.action.String())
	}
	if i.violation != nil {
		i.violationMu.Lock()
		i.violation(host, env)
		i.violationMu.Unlock()
	}
	return &ViolationError{Host: host, Env: env, Action: i.action}
}

// LeafCacheLen reports how many minted leaves are cached.
func (i *Interceptor) LeafCacheLen() int { return i.leaves.len() }

// splitDst parses a host:port destination.
func splitDst(dst string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(dst)
	if err != nil {
		return "", 0, fmt.Errorf("destination %q: %w", dst, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("destination %q: bad port", dst)
	}
	return normalizeHost(h), uint16(n), nil
}
