package tlsintercept

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names of the per-home CA inside the directory given to LoadOrCreateCA.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

const (
	caCommonName = "msb interception CA"
	caValidity   = 10 * 365 * 24 * time.Hour
	// clockSkew is how far certificates are backdated: a guest whose clock
	// is behind the host's (a restored snapshot, no RTC sync yet) must
	// still accept them. Upstream microsandbox minted "valid from now" and
	// guests a few hours behind failed every handshake.
	clockSkew = 24 * time.Hour
)

// ErrKeyPermissions is returned by LoadOrCreateCA when the CA key file can be
// read or written by anyone but its owner.
var ErrKeyPermissions = errors.New("ca key file is accessible by group or others")

// CA is an interception certificate authority: the guest trusts its
// certificate, and the Interceptor signs a leaf with its key for every host it
// terminates. A CA is immutable and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

// LoadOrCreateCA returns the CA stored as dir/ca.crt and dir/ca.key, creating
// both on first use (ECDSA P-256, valid for ten years, key file mode 0600,
// directory 0700). It refuses a key file that group or others may access
// (ErrKeyPermissions) and a directory holding only one of the two files.
// Concurrent first calls agree on one CA: the key is published with a
// hard link, which fails if another caller got there first.
func LoadOrCreateCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, CAKeyFile)
	certPath := filepath.Join(dir, CACertFile)
	if _, err := os.Lstat(keyPath); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(certPath); err == nil {
			return nil, fmt.Errorf("load ca: %s exists without %s", certPath, CAKeyFile)
		}
		if err := createCA(dir, certPath, keyPath); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	// A concurrent creator links the key before the certificate: give it
	// a moment to finish.
	for try := 0; ; try++ {
		ca, err := loadCAFiles(certPath, keyPath)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || try == 50 {
			return ca, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func loadCAFiles(certPath, keyPath string) (*CA, error) {
	fi, err := os.Lstat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load ca: %s is not a regular file", keyPath)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load ca: %s has mode %#o: %w", keyPath, fi.Mode().Perm(), ErrKeyPermissions)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	return LoadCA(certPEM, keyPEM)
}

// createCA writes a fresh CA. Both files are written to temporary names and
// linked into place, key first, so a reader never sees a partial file and a
// racing creator gets fs.ErrExist.
func createCA(dir, certPath, keyPath string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create ca: %w", err)
	}
	certPEM, keyPEM, err := newCA(time.Now())
	if err != nil {
		return err
	}
	keyTmp, err := writeTemp(dir, keyPEM, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(keyTmp)
	certTmp, err := writeTemp(dir, certPEM, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(certTmp)
	if err := os.Link(keyTmp, keyPath); err != nil {
		return fmt.Errorf("create ca: %w", err)
	}
	if err := os.Link(certTmp, certPath); err != nil {
		return fmt.Errorf("create ca: %w", err)
	}
	return nil
}

func writeTemp(dir string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".ca-*.tmp")
	if err != nil {
		return "", fmt.Errorf("create ca: %w", err)
	}
	name := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("create ca: %w", err)
	}
	return name, nil
}

// newCA generates a CA certificate and PKCS #8 key, both PEM-encoded.
func newCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"msb"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("create ca: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// LoadCA builds a CA from user-supplied PEM: a CA certificate (basic
// constraints CA, and cert-sign key usage when key usage is present) and its
// private key (PKCS #8, SEC 1 EC or PKCS #1 RSA), which must match.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("load ca: no CERTIFICATE block in certificate PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("load ca: certificate is not a CA")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("load ca: certificate may not sign certificates")
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("load ca: private key does not match certificate")
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
	}, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("load ca: no private key block in key PEM")
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue // e.g. EC PARAMETERS
		}
		if err != nil {
			return nil, fmt.Errorf("load ca: parse %s: %w", b.Type, err)
		}
		switch k := k.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("load ca: unsupported key type %T", k)
		}
	}
}

// CertPEM returns the CA certificate, PEM-encoded: what the guest installs in
// its trust store. The caller must not modify it.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Certificate returns the parsed CA certificate. The caller must not modify
// it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }
