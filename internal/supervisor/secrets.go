package supervisor

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/msb-go/msb/internal/launch"
	"github.com/msb-go/msb/internal/netstack"
	"github.com/msb-go/msb/internal/store"
	"github.com/msb-go/msb/internal/tlsintercept"
)

// interceptor builds the TLS interception a sandbox with secrets needs:
// the CA (the home's, created once under MSB_HOME/tls, or the user's), the
// secrets with their values, and what a violation does. It returns the CA
// certificate for the guest's trust store. No secrets: nil, nil.
func (s *sandbox) interceptor() (netstack.Interceptor, []byte, error) {
	l := s.launch
	if len(l.Secrets) == 0 {
		return nil, nil, nil
	}
	t := l.TLS
	if t == nil {
		t = &launch.TLS{}
	}
	ca, err := s.loadCA(t)
	if err != nil {
		return nil, nil, launch.Fail(launch.PrefixNetwork, fmt.Errorf("tls interception CA: %w", err))
	}
	cfg := tlsintercept.Config{CA: ca, Ports: t.Ports, Bypass: t.Bypass, Logger: s.log}
	for _, sec := range l.Secrets {
		cfg.Secrets = append(cfg.Secrets, tlsintercept.Secret{Env: sec.Env, Value: sec.Value,
			Placeholder: sec.Placeholder(), Hosts: sec.Hosts})
	}
	for _, f := range t.UpstreamCAFiles {
		certs, err := readCerts(f)
		if err != nil {
			return nil, nil, launch.Fail(launch.PrefixInvalidConfig, fmt.Errorf("tls upstream CA %s: %w", f, err))
		}
		cfg.ExtraUpstreamCAs = append(cfg.ExtraUpstreamCAs, certs...)
	}
	switch t.OnViolation {
	case "block":
		cfg.OnViolation = tlsintercept.Block
	case "block-and-terminate":
		cfg.OnViolation = tlsintercept.BlockAndTerminate
	default:
		cfg.OnViolation = tlsintercept.BlockAndLog
	}
	terminate := cfg.OnViolation == tlsintercept.BlockAndTerminate
	cfg.Violation = func(host, env string) {
		if terminate {
			// The reference ends the sandbox with reason Signal.
			s.log.Warn("secret violation: stopping the sandbox", "secret", env, "host", host)
			s.requestStop(store.ReasonSignal)
		}
	}
	i, err := tlsintercept.New(cfg)
	if err != nil {
		return nil, nil, launch.Fail(launch.PrefixInvalidConfig, err)
	}
	ports := t.Ports
	if len(ports) == 0 {
		ports = []uint16{443}
	}
	s.log.Info("tls interception", "secrets", len(cfg.Secrets), "ports", launch.PortList(ports), "on_violation", cfg.OnViolation)
	return interceptAdapter{i: i, proxyPorts: t.ProxyPorts}, ca.CertPEM(), nil
}

// loadCA is the user's CA when the launch names one, else the home's.
func (s *sandbox) loadCA(t *launch.TLS) (*tlsintercept.CA, error) {
	if t.CACert != "" {
		cert, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, err
		}
		key, err := os.ReadFile(t.CAKey)
		if err != nil {
			return nil, err
		}
		return tlsintercept.LoadCA(cert, key)
	}
	return tlsintercept.LoadOrCreateCA(filepath.Join(s.home.Root, "tls"))
}

// readCerts parses every CERTIFICATE block of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return out, nil
}

// interceptAdapter lets a tlsintercept.Interceptor take the network stack's
// intercepted flows: TLS on the intercepted ports, and HTTP CONNECT on the
// proxy ports (the tunnelled TLS is intercepted the same way).
type interceptAdapter struct {
	i          *tlsintercept.Interceptor
	proxyPorts []uint16
}

var _ netstack.Interceptor = interceptAdapter{}

func (a interceptAdapter) Intercepts(host string, port uint16) bool {
	return slices.Contains(a.proxyPorts, port) || a.i.Intercepts(host, port)
}

func (a interceptAdapter) Handle(ctx context.Context, guest net.Conn, dst string, dial func(context.Context) (net.Conn, error)) error {
	if _, p, err := net.SplitHostPort(dst); err == nil {
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && slices.Contains(a.proxyPorts, uint16(n)) {
			return a.i.HandleConnect(ctx, guest, dst, tlsintercept.Dialer(dial))
		}
	}
	return a.i.Handle(ctx, guest, dst, tlsintercept.Dialer(dial))
}
