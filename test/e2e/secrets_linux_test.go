package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSecrets: a secret never enters the guest. The guest's env holds a
// placeholder; a Debian guest's Python (verifying certificates with the
// system trust store, which agentd extended with the interception CA) sends
// `Authorization: Bearer $API_KEY` to an HTTPS server on the host (its own
// test CA) through host.msb.internal, and the server receives the real
// value. The same header to a host the secret is not for is blocked, and
// with block-and-terminate the sandbox ends. Afterwards no file under
// MSB_HOME, no log and no msb or QEMU command line holds the value.
func TestSecrets(t *testing.T) {
	c := newCLI(t)
	rootfs := debianPythonRootfs(t)
	const value = "sk-live-0123456789abcdef-real-secret"
	c.env = append(c.env, "API_KEY="+value)

	caFile, srvCert := testCAAndServerCert(t, "host.msb.internal", "localhost")
	var mu sync.Mutex
	var got []string
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte("origin-ok\n"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	proxyPort := strconv.Itoa(connectProxy(t))

	py := func(url string) string {
		return `import os, sys, urllib.error, urllib.request
req = urllib.request.Request("` + url + `", headers={"Authorization": "Bearer " + os.environ["API_KEY"]})
try:
    print(urllib.request.urlopen(req, timeout=20).read().decode().strip())
except urllib.error.HTTPError as e:
    print("error:", e.code, e.read().decode().strip())
except Exception as e:
    print("error:", e)
`
	}
	common := []string{"--rootfs", rootfs, "-m", "512", "--net-rule", "allow@host",
		"--secret", "API_KEY@host.msb.internal,localhost", "--tls-intercept-port", port, "--tls-upstream-ca-cert", caFile,
		"--tls-proxy-port", proxyPort}

	c.must(0, append([]string{"create", "--name", "sec"}, common...)...)
	defer c.run(context.Background(), nil, "rm", "-f", "sec")
	r := c.must(0, "exec", "sec", "--", "python3", "-c", py("https://host.msb.internal:"+port+"/v1"))
	if strings.TrimSpace(string(r.stdout)) != "origin-ok" {
		t.Fatalf("request through the interception: %q %s", r.stdout, r.stderr)
	}
	mu.Lock()
	if len(got) != 1 || got[0] != "Bearer "+value {
		t.Errorf("the origin received %q; want the real value", got)
	}
	mu.Unlock()

	// Behind an HTTPS_PROXY: the CONNECT tunnel through the proxy on the
	// host is intercepted too (an upstream bug: substitution failed there).
	r = c.must(0, "exec", "sec", "--", "sh", "-c",
		`https_proxy=http://host.msb.internal:`+proxyPort+` python3 -c "$0"`, py("https://localhost:"+port+"/via-proxy"))
	if strings.TrimSpace(string(r.stdout)) != "origin-ok" {
		t.Errorf("request through the CONNECT proxy: %q %s", r.stdout, r.stderr)
	}
	mu.Lock()
	if len(got) != 2 || got[1] != "Bearer "+value {
		t.Errorf("the origin received %q through the proxy; want the real value", got)
	}
	mu.Unlock()

	// The guest only ever has the placeholder: env, every process's
	// environment, its disk.
	r = c.must(0, "exec", "sec", "--", "sh", "-c",
		`echo "$API_KEY"; cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -c '`+value+`'; `+
			`grep -rsl '`+value+`' /etc /root /tmp /var 2>/dev/null | wc -l`)
	if f := strings.Fields(string(r.stdout)); len(f) != 3 || f[0] != "$MSB_API_KEY" || f[1] != "0" || f[2] != "0" {
		t.Errorf("guest view = %q; want the placeholder and no trace of the value", r.stdout)
	}

	// To a host the secret is not for (the gateway's IP: no SNI match):
	// blocked, the origin never sees it.
	r = c.must(0, "exec", "sec", "--", "sh", "-c",
		`gw=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf); python3 -c "$0" "$gw"`,
		strings.Replace(py("https://GW:"+port+"/v1"), `"https://GW:`, `"https://" + sys.argv[1] + ":`, 1))
	if out := string(r.stdout); !strings.Contains(out, "403") {
		t.Errorf("placeholder to another host: %q; want a 403", out)
	}
	mu.Lock()
	if len(got) != 2 {
		t.Errorf("the origin received %d requests; the blocked one must not reach it", len(got))
	}
	mu.Unlock()

	// block-and-terminate ends the sandbox.
	c.must(0, append([]string{"create", "--name", "sec2", "--on-secret-violation", "block-and-terminate"}, common...)...)
	defer c.run(context.Background(), nil, "rm", "-f", "sec2")
	c.run(context.Background(), nil, "exec", "sec2", "--", "sh", "-c",
		`gw=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf); python3 -c "$0" "$gw"`,
		strings.Replace(py("https://GW:"+port+"/v1"), `"https://GW:`, `"https://" + sys.argv[1] + ":`, 1))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		e := c.ls()["sec2"]
		if e.Status == "Stopped" {
			if e.Reason != "Signal" {
				t.Errorf("after a violation with block-and-terminate: reason %q; want Signal", e.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox still %s after a violation with block-and-terminate", e.Status)
		}
	}

	// Nowhere on the host: files under MSB_HOME (logs, database, launch
	// leftovers) and the command lines of msb and QEMU.
	filepath.Walk(c.home, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 256<<20 {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), value) {
			t.Errorf("the secret's value is in %s", p)
		}
		return nil
	})
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), value) {
			t.Errorf("the secret's value is in %s: %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// connectProxy serves HTTP CONNECT on a loopback port (a stand-in for the
// user's proxy on the host) and returns the port.
func connectProxy(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		c, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { io.Copy(up, buf); up.(*net.TCPConn).CloseWrite() }()
		io.Copy(c, up)
		c.Close()
		up.Close()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// testCAAndServerCert makes a CA (written as PEM to a file) and a server
// certificate it signs for names.
func testCAAndServerCert(t *testing.T, names ...string) (string, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "msb e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "test-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
