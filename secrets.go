package msb

import (
	"errors"
	"os"
	"reflect"

	"github.com/msb-go/msb/internal/launch"
)

// Secrets: the guest's environment holds only a placeholder ("$MSB_<ENV>");
// the sandbox process intercepts TLS to the hosts a secret is allowed for
// (port 443 unless WithTLSInterceptPorts says otherwise) and replaces the
// placeholder in request headers, Basic auth included. The placeholder
// headed anywhere else is blocked. The value never reaches the guest, argv,
// the database or logs. The guest trusts msb's interception CA
// (MSB_HOME/tls), installed into its trust store at boot.

// WithSecret gives the guest env a placeholder for value, which replaces it
// in TLS requests to hosts ("api.example.com", "*.example.com"). A sandbox
// with such a secret cannot be restarted with Start unless the value is
// given again (WithSecret in Start's options); see WithSecretFromEnv.
func WithSecret(env, value string, hosts ...string) Option {
	return func(c *config) {
		c.addSecret(launch.SecretRef{Env: env, Hosts: hosts}, value)
	}
}

// WithSecretFromEnv is WithSecret with the value read from this process's
// environment variable env, now and again whenever the sandbox starts.
func WithSecretFromEnv(env string, hosts ...string) Option {
	return func(c *config) {
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			c.errs = append(c.errs, errors.New("secret "+env+": not set in the environment"))
			return
		}
		c.addSecret(launch.SecretRef{Env: env, Hosts: hosts, FromEnv: true}, v)
	}
}

func (c *config) addSecret(ref launch.SecretRef, value string) {
	if c.secretValues == nil {
		c.secretValues = map[string]string{}
	}
	for i, s := range c.secrets {
		if s.Env == ref.Env {
			c.secrets[i] = ref
			c.secretValues[ref.Env] = value
			return
		}
	}
	c.secrets = append(c.secrets, ref)
	c.secretValues[ref.Env] = value
}

// WithTLSInterceptPorts sets the destination ports whose TLS is intercepted
// (default 443).
func WithTLSInterceptPorts(ports ...uint16) Option {
	return func(c *config) { c.tls.Ports = append(c.tls.Ports, ports...) }
}

// WithTLSProxyPorts names ports where the guest reaches an HTTP proxy
// (HTTPS_PROXY=http://host.msb.internal:3128, say): CONNECT tunnels through
// them are intercepted like direct TLS, so secrets work behind a proxy.
func WithTLSProxyPorts(ports ...uint16) Option {
	return func(c *config) { c.tls.ProxyPorts = append(c.tls.ProxyPorts, ports...) }
}

// WithTLSBypass lists hosts never intercepted ("example.com",
// "*.example.com"); hosts a secret is for are intercepted anyway.
func WithTLSBypass(hosts ...string) Option {
	return func(c *config) { c.tls.Bypass = append(c.tls.Bypass, hosts...) }
}

// WithTLSUpstreamCA trusts the CA certificates in these PEM files for
// origins, besides the host's roots.
func WithTLSUpstreamCA(files ...string) Option {
	return func(c *config) { c.tls.UpstreamCAFiles = append(c.tls.UpstreamCAFiles, files...) }
}

// WithTLSInterceptCA uses this CA (PEM certificate and key files) instead of
// the home's.
func WithTLSInterceptCA(certFile, keyFile string) Option {
	return func(c *config) { c.tls.CACert, c.tls.CAKey = certFile, keyFile }
}

// WithSecretViolation sets what a placeholder headed for another host does:
// "block", "block-and-log" (default) or "block-and-terminate" (the sandbox
// stops).
func WithSecretViolation(action string) Option {
	return func(c *config) { c.tls.OnViolation = action }
}

// tlsConfig is nil when no TLS option was given.
func (c *config) tlsConfig() *launch.TLS {
	if reflect.DeepEqual(c.tls, launch.TLS{}) {
		return nil
	}
	t := c.tls
	return &t
}
