package guestkernel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert returns a self-signed certificate as PEM, and its key as PEM.
func testCert(t *testing.T, cn string, isCA bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestWriteTLSCerts(t *testing.T) {
	ca, caKey := testCert(t, "msb interception CA", true)
	host1, _ := testCert(t, "corp root 1", true)
	host2, _ := testCert(t, "corp root 2", true)
	leaf, _ := testCert(t, "leaf", false)
	hostBundle := append(append([]byte("# corp root 1\n"), host1...), append([]byte("\n# corp root 2\n"), host2...)...)

	tests := []struct {
		name       string
		ca, host   []byte
		want       map[string]string // file name → contents
		wantErrSub string
	}{
		{name: "ca only", ca: ca, want: map[string]string{TLSCAFile: string(ca)}},
		{
			name: "ca and host CAs, comments dropped",
			ca:   ca, host: hostBundle,
			want: map[string]string{TLSCAFile: string(ca), TLSHostCAFile: string(host1) + string(host2)},
		},
		{name: "host CAs only", host: host1, want: map[string]string{TLSHostCAFile: string(host1)}},
		{name: "nothing", wantErrSub: "no CA and no host CAs"},
		{name: "private key alongside", ca: append(append([]byte{}, ca...), caKey...), wantErrSub: `"EC PRIVATE KEY"`},
		{name: "key only", ca: caKey, wantErrSub: "only CERTIFICATE blocks"},
		{name: "leaf as CA", ca: leaf, wantErrSub: "not a CA certificate"},
		{name: "two CAs", ca: append(append([]byte{}, ca...), host1...), wantErrSub: "want exactly one"},
		{name: "not PEM", ca: []byte("hello"), wantErrSub: "no PEM certificate"},
		{name: "bad DER", ca: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), wantErrSub: "certificate 1:"},
		{name: "truncated block", host: append(append([]byte{}, host1...), host2[:40]...), wantErrSub: "malformed PEM block after certificate 1"},
		{name: "headers", ca: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte("x")}), wantErrSub: "PEM headers"},
		{name: "too large host", ca: ca, host: bytes.Repeat(host1, MaxTLSCertsBytes/len(host1)+1), wantErrSub: "host CAs: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteTLSCerts(&buf, tc.ca, tc.host)
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("WriteTLSCerts error = %v; want it to contain %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			entries := readNewc(t, buf.Bytes())
			if len(entries) != 2+len(tc.want) || entries[0].Name != "msb" || entries[1].Name != TLSPath || entries[1].Mode != 0o40755 {
				t.Fatalf("entries = %+v", entries)
			}
			for _, e := range entries[2:] {
				want, ok := tc.want[e.Name]
				if !ok {
					t.Errorf("unexpected entry %q", e.Name)
					continue
				}
				if e.Mode != 0o100644 {
					t.Errorf("%s mode = %o; want 100644", e.Name, e.Mode)
				}
				if e.Data != want {
					t.Errorf("%s = %q; want %q", e.Name, e.Data, want)
				}
			}
		})
	}
	if err := WriteTLSCerts(&bytes.Buffer{}, ca, bytes.Repeat([]byte(" "), MaxTLSCertsBytes+1)); err == nil || !strings.Contains(err.Error(), "the limit is") {
		t.Errorf("oversized host CAs: %v; want the size limit", err)
	}
}

// TestWriteTLSCertsCPIO extracts the archive with GNU cpio, as the kernel
// would unpack it after the base initramfs.
func TestWriteTLSCertsCPIO(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skipf("cpio not installed (apt-get install cpio); oracle check skipped")
	}
	ca, _ := testCert(t, "msb interception CA", true)
	host, _ := testCert(t, "corp root", true)
	var buf bytes.Buffer
	if err := WriteTLSCerts(&buf, ca, host); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-i", "--no-absolute-filenames", "-d", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	for name, want := range map[string][]byte{TLSCAFile: ca, TLSHostCAFile: host} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("extracted %s = %q, %v; want %q", name, got, err, want)
		}
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().Perm() != 0o644 {
			// cpio applies the umask; 0644 survives the usual 022.
			t.Errorf("extracted %s mode = %v; want 0644", name, st.Mode().Perm())
		}
	}
}

func FuzzWriteTLSCerts(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte(""))
	f.Add([]byte("x"), []byte("-----BEGIN X-----\n"))
	f.Fuzz(func(t *testing.T, ca, host []byte) {
		var buf bytes.Buffer
		if err := WriteTLSCerts(&buf, ca, host); err != nil {
			return
		}
		for _, e := range readNewc(t, buf.Bytes())[2:] {
			if _, err := cleanCertsPEM([]byte(e.Data)); err != nil {
				t.Fatalf("%s does not re-parse: %v", e.Name, err)
			}
		}
	})
}
