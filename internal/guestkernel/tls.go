package guestkernel

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// Where agentd finds the certificates the guest must trust in the initramfs.
// It copies them to /.msb/tls and installs them into the guest's trust store
// (internal/agent, trust_linux.go).
const (
	TLSPath       = "msb/tls"
	TLSCAFile     = TLSPath + "/ca.pem"       // the sandbox's TLS interception CA
	TLSHostCAFile = TLSPath + "/host-cas.pem" // host CAs the user chose to trust in the guest
)

// MaxTLSCertsBytes bounds each of WriteTLSCerts' inputs. A full Mozilla
// bundle is about 220 KiB.
const MaxTLSCertsBytes = 1 << 20

// WriteTLSCerts writes a standalone newc archive holding /msb/tls/ca.pem
// (the interception CA, one CA certificate) and, when hostCAsPEM is not
// empty, /msb/tls/host-cas.pem (one or more certificates), both 0644.
// caPEM may be empty when hostCAsPEM is not, for a sandbox that trusts host
// CAs without intercepting TLS; both empty is an error.
//
// Inputs larger than MaxTLSCertsBytes are refused. Each must be PEM
// CERTIFICATE blocks that crypto/x509 parses; any other block (a private key
// above all) is an error. Text between blocks is dropped: the archive holds
// the blocks re-encoded, so the guest appends only clean PEM to its bundle.
func WriteTLSCerts(w io.Writer, caPEM, hostCAsPEM []byte) error {
	if len(caPEM) == 0 && len(hostCAsPEM) == 0 {
		return errors.New("tls certs: no CA and no host CAs")
	}
	entries := []Entry{{Name: "msb", Mode: fs.ModeDir | 0o755}, {Name: TLSPath, Mode: fs.ModeDir | 0o755}}
	if len(caPEM) > 0 {
		certs, err := cleanCertsPEM(caPEM)
		if err != nil {
			return fmt.Errorf("tls certs: interception CA: %w", err)
		}
		if len(certs) != 1 {
			return fmt.Errorf("tls certs: interception CA: %d certificates; want exactly one", len(certs))
		}
		if c := certs[0]; !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("tls certs: interception CA %q is not a CA certificate", c.Subject)
		}
		entries = append(entries, Entry{Name: TLSCAFile, Mode: 0o644, Data: encodeCerts(certs)})
	}
	if len(hostCAsPEM) > 0 {
		certs, err := cleanCertsPEM(hostCAsPEM)
		if err != nil {
			return fmt.Errorf("tls certs: host CAs: %w", err)
		}
		entries = append(entries, Entry{Name: TLSHostCAFile, Mode: 0o644, Data: encodeCerts(certs)})
	}
	return WriteArchive(w, entries...)
}

// cleanCertsPEM parses b as one or more PEM certificates.
func cleanCertsPEM(b []byte) ([]*x509.Certificate, error) {
	if len(b) > MaxTLSCertsBytes {
		return nil, fmt.Errorf("%d bytes; the limit is %d", len(b), MaxTLSCertsBytes)
	}
	var certs []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(bytes.TrimSpace(rest)) > 0 && bytes.Contains(rest, []byte("-----BEGIN")) {
				return nil, fmt.Errorf("malformed PEM block after certificate %d", len(certs))
			}
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("block %d is %q; only CERTIFICATE blocks are allowed", len(certs)+1, blk.Type)
		}
		if len(blk.Headers) > 0 {
			return nil, fmt.Errorf("certificate %d has PEM headers", len(certs)+1)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
