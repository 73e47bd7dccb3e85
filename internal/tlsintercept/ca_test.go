package tlsintercept

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	if c.Subject.CommonName != caCommonName || !c.IsCA || !c.MaxPathLenZero {
		t.Errorf("CA subject %q, IsCA %v, MaxPathLenZero %v", c.Subject.CommonName, c.IsCA, c.MaxPathLenZero)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T; want ECDSA P-256", c.PublicKey)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < caValidity || life > caValidity+clockSkew+time.Minute {
		t.Errorf("CA lifetime %v; want about ten years", life)
	}
	if c.NotBefore.After(time.Now().Add(-clockSkew + time.Minute)) {
		t.Errorf("CA NotBefore %v is not backdated a day", c.NotBefore)
	}
	for name, want := range map[string]os.FileMode{CAKeyFile: 0o600, CACertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, err %v; want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v; want 0700", fi.Mode().Perm())
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil || string(again.CertPEM()) != string(ca.CertPEM()) {
		t.Fatalf("second load: %v; want the same CA", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ca-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("group-readable key: %v; want ErrKeyPermissions", err)
	}
}

func TestLoadOrCreateCAConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	pems := make([]string, 8)
	for i := range pems {
		wg.Go(func() {
			ca, err := LoadOrCreateCA(dir)
			if err != nil {
				t.Error(err)
				return
			}
			pems[i] = string(ca.CertPEM())
		})
	}
	wg.Wait()
	for _, p := range pems[1:] {
		if p != pems[0] {
			t.Fatal("concurrent creators got different CAs")
		}
	}
}

func TestLoadOrCreateCAHalf(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CACertFile), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); err == nil {
		t.Error("cert without key: nil error")
	}
}

func TestLoadCA(t *testing.T) {
	certPEM, keyPEM, err := newCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := newCA(time.Now())
	leafCert, leafKey := leafPEM(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaCert := selfSigned(t, rsaKey)
	rsaKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	tests := []struct {
		name      string
		cert, key []byte
		wantErr   string
	}{
		{"generated", certPEM, keyPEM, ""},
		{"user RSA CA, PKCS #1 key", rsaCert, rsaKeyPEM, ""},
		{"mismatched key", certPEM, otherKey, "does not match"},
		{"not a CA", leafCert, leafKey, "not a CA"},
		{"no cert", []byte("junk"), keyPEM, "no CERTIFICATE"},
		{"no key", certPEM, []byte("junk"), "no private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCA(tc.cert, tc.key)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("LoadCA = %v; want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func selfSigned(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big1(), Subject: pkix.Name{CommonName: "user ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func leafPEM(t *testing.T) (certPEM, keyPEM []byte) {
	ca := testCA(t)
	leaf, err := ca.mint("x.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

func big1() *big.Int { s, _ := randomSerial(); return s }
