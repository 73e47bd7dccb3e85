package image

import (
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func requireBasicAuth(reg *testRegistry, user, pass string) {
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return true
	})
}

func TestPullWithLogin(t *testing.T) {
	reg := newTestRegistry(t, false)
	requireBasicAuth(reg, "alice", "s3cret")
	ref := reg.Host + "/private/img:v"
	push(t, ref, randomImage(t, 1024, 1), remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	s := newStore(t, Options{})
	ctx := t.Context()

	if _, err := s.Pull(ctx, ref, "", nil); err == nil {
		t.Fatalf("Pull without credentials = nil; want an error")
	}
	if err := s.Login(ctx, reg.Host, "alice", "wrong"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Login(wrong password) = %v; want ErrUnauthorized", err)
	}
	if logins, err := s.Logins(); err != nil || len(logins) != 0 {
		t.Errorf("Logins after a rejected login = %v, %v; want none", logins, err)
	}
	if err := s.Login(ctx, reg.Host, "alice", "s3cret"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	fi, err := os.Stat(s.credsPath(reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file mode = %v; want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(s.credsDir())
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("credentials dir mode = %v; want 0700", di.Mode().Perm())
	}
	logins, err := s.Logins()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Login{{Registry: reg.Host, Username: "alice"}}, logins); diff != "" {
		t.Errorf("Logins mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.Pull(ctx, ref, "", nil); err != nil {
		t.Fatalf("Pull after login: %v", err)
	}
	if err := s.Logout(reg.Host); err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(reg.Host); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Logout = %v; want ErrNotFound", err)
	}
	if _, err := s.Pull(ctx, ref, PullAlways, nil); err == nil {
		t.Errorf("Pull(always) after logout = nil; want an error")
	}
	for _, bad := range []string{"", "a/b", "../x", "host:0"} {
		if err := s.Login(ctx, bad, "u", "p"); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("Login(%q) = %v; want ErrInvalidReference", bad, err)
		}
	}
}

// TestPlainHTTPPolicy checks that plain HTTP is used only for loopback
// names and registries listed as insecure. The test transport dials the
// test registry whatever host a request names, so no packet leaves the
// machine.
func TestPlainHTTPPolicy(t *testing.T) {
	reg := newTestRegistry(t, false)
	_, port, _ := strings.Cut(reg.Host, ":")
	push(t, reg.Host+"/x/img:v", randomImage(t, 512, 1))
	tests := []struct {
		name     string
		registry string
		insecure bool
		wantOK   bool
	}{
		{"loopback ip", "127.0.0.1:" + port, false, true},
		{"localhost", "localhost:" + port, false, true},
		{"public name refused", "registry.test:" + port, false, false},
		{"rfc1918 refused", "10.1.2.3:" + port, false, false},
		{"public name insecure", "registry.test:" + port, true, true},
		{"rfc1918 insecure", "10.1.2.3:" + port, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Transport: dialAllTo(reg.Host)}
			if tt.insecure {
				opts.Insecure = []string{tt.registry}
			}
			s := newStore(t, opts)
			reg.reset()
			_, err := s.Pull(t.Context(), tt.registry+"/x/img:v", "", nil)
			if tt.wantOK && err != nil {
				t.Fatalf("Pull = %v; want success", err)
			}
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("Pull = nil; want plain HTTP refused")
				}
				if n := reg.count("/v2/"); n != 0 {
					t.Errorf("registry answered %d plain-HTTP requests; want 0", n)
				}
			}
		})
	}
}

func TestGuardRefusesHTTP(t *testing.T) {
	s := newStore(t, Options{Insecure: []string{"ok.test"}})
	g := httpGuard{allow: s.allowHTTP, next: http.DefaultTransport}
	for _, tt := range []struct {
		url    string
		refuse bool
	}{
		{"http://10.0.0.1:5000/v2/", true},
		{"http://registry.test/v2/", true},
		{"http://ok.test/v2/", false},
		{"http://127.0.0.1:1/v2/", false},
		{"http://[::1]:1/v2/", false},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, tt.url, nil)
		if !tt.refuse {
			if !g.allow(req.URL.Host) {
				t.Errorf("guard refuses %s; want allowed", tt.url)
			}
			continue
		}
		if _, err := g.RoundTrip(req); !errors.Is(err, ErrInsecure) {
			t.Errorf("guard.RoundTrip(%s) = %v; want ErrInsecure", tt.url, err)
		}
	}
}

func TestMirrors(t *testing.T) {
	origin := newTestRegistry(t, false)
	mirror := newTestRegistry(t, false)
	dead := newTestRegistry(t, false)
	dead.srv.Close()
	src := randomImage(t, 1024, 1)
	push(t, origin.Host+"/lib/img:v", src)
	push(t, mirror.Host+"/lib/img:v", src)
	origin.reset()
	mirror.reset()
	ref := origin.Host + "/lib/img:v"

	s := newStore(t, Options{Mirrors: map[string][]string{origin.Host: {dead.Host, mirror.Host}}})
	img, err := s.Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatalf("Pull through mirrors: %v", err)
	}
	if img.Ref != ref {
		t.Errorf("Ref = %s; want %s (recorded under the name asked for)", img.Ref, ref)
	}
	if n := origin.count(); n != 0 {
		t.Errorf("origin saw %d requests; want 0 (the mirror served)", n)
	}
	if n := mirror.count("/blobs/"); n == 0 {
		t.Errorf("mirror served no blobs")
	}

	// A mirror without the image falls through to the origin.
	empty := newTestRegistry(t, false)
	s2 := newStore(t, Options{Mirrors: map[string][]string{origin.Host: {empty.Host}}})
	if _, err := s2.Pull(t.Context(), ref, "", nil); err != nil {
		t.Fatalf("Pull with a mirror lacking the image: %v", err)
	}
	if n := origin.count("/manifests/"); n == 0 {
		t.Errorf("origin not asked after the mirror failed")
	}
}

func TestCAFiles(t *testing.T) {
	reg := newTestRegistry(t, true)
	ref := reg.Host + "/tls/img:v"
	push(t, ref, randomImage(t, 512, 1), remote.WithTransport(reg.srv.Client().Transport))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reg.srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newStore(t, Options{}).Pull(t.Context(), ref, "", nil); err == nil {
		t.Errorf("Pull from an untrusted TLS registry = nil; want a certificate error")
	}
	if _, err := newStore(t, Options{CAFiles: []string{ca}}).Pull(t.Context(), ref, "", nil); err != nil {
		t.Errorf("Pull with the registry's CA file: %v", err)
	}
	if _, err := newStore(t, Options{CAFiles: []string{filepath.Join(t.TempDir(), "none.pem")}}).Pull(t.Context(), ref, "", nil); err == nil {
		t.Errorf("Pull with a missing CA file = nil; want an error")
	}
}
