package tlsintercept

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// PlaceholderPrefix starts every default placeholder.
const PlaceholderPrefix = "$MSB_"

// Placeholder returns the default placeholder for a secret exported to the
// guest as the environment variable env: "$MSB_" + env, as in microsandbox.
func Placeholder(env string) string { return PlaceholderPrefix + env }

// Secret is a value the guest must be able to use but never see. The guest's
// environment holds Placeholder under Env; requests over intercepted TLS to
// one of Hosts carry Value instead of Placeholder in their headers.
type Secret struct {
	Env   string // guest environment variable name; identifies the secret in violations
	Value string // never logged, never sent to the guest or to another host
	// Placeholder is what the guest sees; empty means Placeholder(Env).
	Placeholder string
	// Hosts lists where Value may be sent: an exact name ("api.example.com"),
	// "*.suffix" for any name below suffix (not suffix itself), or "*" for any
	// host whose certificate verifies. Matching ignores case and a trailing dot.
	Hosts []string
}

// hostPattern is a normalised Hosts or Bypass entry.
type hostPattern struct {
	any    bool
	exact  string // when non-empty, the whole name
	suffix string // when non-empty, ".suffix" that the name must end with
}

func parsePattern(p string) (hostPattern, error) {
	wildcard := strings.HasPrefix(p, "*.")
	p = normalizeHost(p)
	switch {
	case p == "*" && !wildcard:
		return hostPattern{any: true}, nil
	case strings.HasPrefix(p, "*."):
		s := p[1:]
		if !validHost(s[1:]) {
			return hostPattern{}, fmt.Errorf("host pattern %q: invalid suffix", p)
		}
		return hostPattern{suffix: s}, nil
	case validHost(p):
		return hostPattern{exact: p}, nil
	default:
		return hostPattern{}, fmt.Errorf("host pattern %q: want a name, an IP, *.suffix or *", p)
	}
}

func (hp hostPattern) match(host string) bool {
	switch {
	case host == "":
		return false
	case hp.any:
		return true
	case hp.exact != "":
		return host == hp.exact
	default:
		return len(host) > len(hp.suffix) && strings.HasSuffix(host, hp.suffix)
	}
}

func matchAny(ps []hostPattern, host string) bool {
	for _, p := range ps {
		if p.match(host) {
			return true
		}
	}
	return false
}

// normalizeHost lowercases h and strips one trailing dot and IPv6 brackets.
func normalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return h
}

// validHost reports whether h (normalised) is an IP literal or a DNS name of
// letters, digits, '-' and '_' labels. It bounds what SNI values reach the
// leaf minter and the logs.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validHeaderValue reports whether v can sit in an HTTP/1.1 header value
// (RFC 9110 §5.5: no CR, LF, NUL or other controls but tab).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// secret is a validated Secret.
type secret struct {
	env, value, placeholder string
	hosts                   []hostPattern
}

func (s *secret) allowed(hosts []string) bool {
	for _, h := range hosts {
		if !matchAny(s.hosts, h) {
			return false
		}
	}
	return true
}

// secretSet finds placeholders (leftmost, longest first) in request headers
// and values in responses.
type secretSet struct {
	secrets []secret // sorted by placeholder length, longest first
	byValue []int    // indices into secrets, longest value first
	// ratio bounds growth: no value is longer than ratio times its placeholder.
	ratio int
	// dollarOnly is set when every placeholder starts with '$', so a scan
	// can jump from '$' to '$'.
	dollarOnly bool
	// valueFirst marks the first bytes of values, to skip most positions
	// of a response body cheaply.
	valueFirst [256]bool
}

func newSecretSet(in []Secret) (*secretSet, error) {
	ss := &secretSet{ratio: 1, dollarOnly: true}
	seenEnv := map[string]bool{}
	seenPH := map[string]bool{}
	for _, s := range in {
		if s.Env == "" {
			return nil, errors.New("secret: empty Env")
		}
		if seenEnv[s.Env] {
			return nil, fmt.Errorf("secret %s: duplicate Env", s.Env)
		}
		seenEnv[s.Env] = true
		ph := s.Placeholder
		if ph == "" {
			ph = Placeholder(s.Env)
		}
		switch {
		case len(ph) < 4:
			return nil, fmt.Errorf("secret %s: placeholder shorter than 4 bytes", s.Env)
		case !validHeaderValue(ph) || strings.ContainsAny(ph, " \t"):
			return nil, fmt.Errorf("secret %s: placeholder has spaces or control characters", s.Env)
		case seenPH[ph]:
			return nil, fmt.Errorf("secret %s: placeholder %q used twice", s.Env, ph)
		case s.Value == "":
			return nil, fmt.Errorf("secret %s: empty Value", s.Env)
		case !validHeaderValue(s.Value):
			// Never echo the value itself.
			return nil, fmt.Errorf("secret %s: value has control characters", s.Env)
		case strings.Contains(s.Value, ph):
			return nil, fmt.Errorf("secret %s: value contains its placeholder", s.Env)
		case len(s.Hosts) == 0:
			return nil, fmt.Errorf("secret %s: no Hosts", s.Env)
		}
		seenPH[ph] = true
		ss.dollarOnly = ss.dollarOnly && ph[0] == '$'
		sec := secret{env: s.Env, value: s.Value, placeholder: ph}
		for _, h := range s.Hosts {
			p, err := parsePattern(h)
			if err != nil {
				return nil, fmt.Errorf("secret %s: %w", s.Env, err)
			}
			sec.hosts = append(sec.hosts, p)
		}
		ss.ratio = max(ss.ratio, (len(s.Value)+len(ph)-1)/len(ph))
		ss.secrets = append(ss.secrets, sec)
		ss.valueFirst[s.Value[0]] = true
	}
	slices.SortStableFunc(ss.secrets, func(a, b secret) int { return cmp.Compare(len(b.placeholder), len(a.placeholder)) })
	for i := range ss.secrets {
		ss.byValue = append(ss.byValue, i)
	}
	slices.SortStableFunc(ss.byValue, func(a, b int) int {
		return cmp.Compare(len(ss.secrets[b].value), len(ss.secrets[a].value))
	})
	return ss, nil
}

// placeholderAt returns the index of the longest placeholder starting at
// s[i:], or -1.
func (ss *secretSet) placeholderAt(s string, i int) int {
	for k := range ss.secrets {
		if strings.HasPrefix(s[i:], ss.secrets[k].placeholder) {
			return k
		}
	}
	return -1
}

// substitute replaces, scanning left to right, every placeholder in s by its
// value. If a placeholder's secret is not allowed for every one of hosts, it
// returns that secret's index as violation and s unchanged.
func (ss *secretSet) substitute(s string, hosts []string) (out string, changed bool, violation int) {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		j := 0 // custom placeholders: try every position
		if ss.dollarOnly {
			j = strings.IndexByte(s[i:], '$')
		}
		if j < 0 {
			break
		}
		i += j
		k := ss.placeholderAt(s, i)
		if k < 0 {
			i++
			continue
		}
		sec := &ss.secrets[k]
		if !sec.allowed(hosts) {
			return s, false, k
		}
		b.WriteString(s[last:i])
		b.WriteString(sec.value)
		i += len(sec.placeholder)
		last = i
		changed = true
	}
	if !changed {
		return s, false, -1
	}
	b.WriteString(s[last:])
	return b.String(), true, -1
}

// rewriteValue substitutes placeholders in one header value. For an
// Authorization value with the Basic scheme it also looks inside the base64
// credentials, and re-encodes them when it substituted.
func (ss *secretSet) rewriteValue(name, v string, hosts []string) (string, bool, int) {
	out, changed, viol := ss.substitute(v, hosts)
	if viol >= 0 {
		return v, false, viol
	}
	if name == "Authorization" || name == "Proxy-Authorization" {
		if scheme, cred, ok := strings.Cut(out, " "); ok && strings.EqualFold(scheme, "Basic") {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
			if err == nil {
				dec, bchanged, bviol := ss.substitute(string(raw), hosts)
				if bviol >= 0 {
					return v, false, bviol
				}
				if bchanged {
					return scheme + " " + base64.StdEncoding.EncodeToString([]byte(dec)), true, -1
				}
			}
		}
	}
	return out, changed, viol
}

// rewriteHeader substitutes placeholders in every value of h in place. h is
// keyed by canonical names, as net/http's parser leaves it. On a violation h
// is left unmodified and the secret's index is returned. The result grows by
// at most a factor of ss.ratio per value, plus 4 bytes for base64 padding.
func (ss *secretSet) rewriteHeader(h map[string][]string, hosts []string) (changed bool, violation int) {
	type edit struct {
		name string
		i    int
		v    string
	}
	var edits []edit
	for name, vs := range h {
		if viol := ss.scanName(name, hosts); viol >= 0 {
			return false, viol
		}
		for i, v := range vs {
			out, ch, viol := ss.rewriteValue(name, v, hosts)
			if viol >= 0 {
				return false, viol
			}
			if ch {
				edits = append(edits, edit{name, i, out})
			}
		}
	}
	for _, e := range edits {
		h[e.name][e.i] = e.v
	}
	return len(edits) > 0, -1
}

// scanName is scan for a header name, which net/http has re-cased, so
// placeholders match regardless of case.
func (ss *secretSet) scanName(name string, hosts []string) int {
	lower := strings.ToLower(name)
	for k := range ss.secrets {
		if strings.Contains(lower, strings.ToLower(ss.secrets[k].placeholder)) && !ss.secrets[k].allowed(hosts) {
			return k
		}
	}
	return -1
}

// scan reports the first secret whose placeholder occurs in s but which is not
// allowed for hosts, or -1. It is used where nothing is substituted (the
// request target, CONNECT headers).
func (ss *secretSet) scan(s string, hosts []string) int {
	_, _, viol := ss.substitute(s, hosts)
	return viol
}
