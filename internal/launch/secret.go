package launch

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Secret is one secret the sandbox process injects into intercepted TLS
// requests: the guest's environment holds only "$MSB_<Env>", and Value
// replaces it in requests to Hosts. Value travels in the launch document on
// its inherited pipe only: never in argv, the database, logs or the guest.
type Secret struct {
	Env   string   `json:"env"`
	Value string   `json:"value"`
	Hosts []string `json:"hosts"`
}

// Placeholder is what the guest sees in Env's place.
func (s Secret) Placeholder() string { return "$MSB_" + s.Env }

// SecretRef is a secret as stored with a sandbox's configuration: its name
// and hosts, never its value. FromEnv secrets take their value from the
// host environment variable Env each time the sandbox starts; the others
// only have one when they are given again.
type SecretRef struct {
	Env     string   `json:"env"`
	Hosts   []string `json:"hosts"`
	FromEnv bool     `json:"from_env,omitempty"`
}

// TLS configures interception. Interception is on when the sandbox has
// secrets.
type TLS struct {
	// Ports are the intercepted destination ports; empty means 443.
	Ports []uint16 `json:"ports,omitempty"`
	// ProxyPorts are destination ports where the guest reaches an HTTP
	// proxy (HTTPS_PROXY=http://host.msb.internal:3128): CONNECT tunnels
	// through them are intercepted like direct TLS.
	ProxyPorts []uint16 `json:"proxy_ports,omitempty"`
	// Bypass are hosts never intercepted: exact or "*.suffix".
	Bypass []string `json:"bypass,omitempty"`
	// UpstreamCAFiles are PEM files of extra CAs trusted for origins.
	UpstreamCAFiles []string `json:"upstream_ca_files,omitempty"`
	// CACert and CAKey name a user-supplied interception CA; empty means
	// the home's (MSB_HOME/tls, created once).
	CACert string `json:"ca_cert,omitempty"`
	CAKey  string `json:"ca_key,omitempty"`
	// OnViolation is block, block-and-log (default) or block-and-terminate.
	OnViolation string `json:"on_violation,omitempty"`
}

// Violation actions.
var violationActions = []string{"block", "block-and-log", "block-and-terminate"}

// ErrBadSecret reports an invalid --secret.
var ErrBadSecret = errors.New("invalid secret")

// ParseSecret reads --secret ENV=VALUE@HOST[,HOST…] or ENV@HOST[,HOST…]
// (the value from the host environment variable ENV, so it is never in
// argv). VALUE may itself contain '@': the last '@' starts the hosts.
func ParseSecret(s string, getenv func(string) (string, bool)) (ref SecretRef, value string, err error) {
	bad := func(why string) (SecretRef, string, error) {
		// Never echo s: it may hold the value.
		return SecretRef{}, "", fmt.Errorf("%w: %s (want ENV=VALUE@HOST[,HOST…] or ENV@HOST[,HOST…])", ErrBadSecret, why)
	}
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return bad("no @HOST")
	}
	head, hosts := s[:at], s[at+1:]
	env, val, hasVal := strings.Cut(head, "=")
	if !validEnvName(env) {
		return bad("the variable name must be letters, digits and _, not starting with a digit")
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" || strings.ContainsAny(h, " /:@") {
			return bad("hosts are names like api.example.com or *.example.com, comma-separated")
		}
		ref.Hosts = append(ref.Hosts, h)
	}
	ref.Env = env
	if hasVal {
		if val == "" {
			return bad("empty value for " + env)
		}
		return ref, val, nil
	}
	v, ok := getenv(env)
	if !ok || v == "" {
		return SecretRef{}, "", fmt.Errorf("%w: %s is not set in your environment (give ENV=VALUE@HOST, or export %s)", ErrBadSecret, env, env)
	}
	ref.FromEnv = true
	return ref, v, nil
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Validate checks t.
func (t *TLS) Validate() error {
	if t == nil {
		return nil
	}
	if t.OnViolation != "" && !contains(violationActions, t.OnViolation) {
		return fmt.Errorf("on-secret-violation %q: want %s", t.OnViolation, strings.Join(violationActions, ", "))
	}
	if (t.CACert == "") != (t.CAKey == "") {
		return errors.New("--tls-intercept-ca-cert and --tls-intercept-ca-key go together")
	}
	for _, p := range append(slices.Clone(t.Ports), t.ProxyPorts...) {
		if p == 0 {
			return errors.New("tls intercept port 0")
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// PortList renders ports for messages.
func PortList(ports []uint16) string {
	var s []string
	for _, p := range ports {
		s = append(s, strconv.Itoa(int(p)))
	}
	return strings.Join(s, ",")
}
