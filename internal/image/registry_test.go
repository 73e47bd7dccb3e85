package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/store"
)

// testRegistry is ggcr's in-memory registry on 127.0.0.1 behind a handler
// that counts requests and lets a test interfere with them.
type testRegistry struct {
	srv   *httptest.Server
	inner http.Handler
	Host  string // 127.0.0.1:port

	mu       sync.Mutex
	requests []string // "METHOD path" in arrival order
	ranges   []string // Range headers of blob GETs
	// intercept, when set, may answer a request itself (returning true).
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newTestRegistry(t *testing.T, tlsServer bool) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.inner = reg
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.requests = append(tr.requests, r.Method+" "+r.URL.Path)
		if rg := r.Header.Get("Range"); rg != "" && strings.Contains(r.URL.Path, "/blobs/") {
			tr.ranges = append(tr.ranges, rg)
		}
		icpt := tr.intercept
		tr.mu.Unlock()
		if icpt != nil && icpt(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	})
	if tlsServer {
		tr.srv = httptest.NewTLSServer(h)
	} else {
		tr.srv = httptest.NewServer(h)
	}
	t.Cleanup(tr.srv.Close)
	tr.Host = strings.TrimPrefix(strings.TrimPrefix(tr.srv.URL, "http://"), "https://")
	return tr
}

// count returns how many requests matched all of the given substrings
// since the last reset.
func (tr *testRegistry) count(subs ...string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
next:
	for _, r := range tr.requests {
		for _, s := range subs {
			if !strings.Contains(r, s) {
				continue next
			}
		}
		n++
	}
	return n
}

func (tr *testRegistry) reset() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.requests, tr.ranges = nil, nil
}

func (tr *testRegistry) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.intercept = f
}

// push writes img to host/repo with ggcr directly (the test's own client,
// not the code under test).
func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// tarBytes builds a tar from name → content (a trailing "/" makes a
// directory, "->" in content a symlink target).
func tarBytes(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}
		switch {
		case strings.HasSuffix(name, "/"):
			hdr = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		case strings.HasPrefix(content, "->"):
			hdr = &tar.Header{Name: name, Linkname: content[2:], Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(content))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarOpener(t *testing.T, files map[string]string) tarball.Opener {
	data := tarBytes(t, files)
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}

// tarLayer builds a gzip layer of tarBytes(files).
func tarLayer(t *testing.T, files map[string]string) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(tarOpener(t, files))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage is a two-layer image with a config the tests check.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image,
		tarLayer(t, map[string]string{"bin/": "", "bin/hello": "#!/bin/sh\necho hi\n", "etc/": "", "etc/os": "one"}),
		tarLayer(t, map[string]string{"etc/": "", "etc/os": "two", "etc/.wh.gone": "", "bin/sh": "->hello"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/bin", "A=1"}
	cf.Config.Entrypoint = []string{"/bin/hello"}
	cf.Config.Cmd = []string{"x"}
	cf.Config.WorkingDir = "/work"
	cf.Config.User = "1000:1000"
	cf.Config.StopSignal = "SIGINT"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomImage(t *testing.T, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// newStore opens a Store over a fresh home and database.
func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	h, err := home.At(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return openAt(t, h, opts)
}

func openAt(t *testing.T, h home.Home, opts Options) *Store {
	t.Helper()
	st, err := store.Open(context.Background(), h.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if opts.Keychain == nil {
		// Never read the developer's ~/.docker/config.json in tests.
		opts.Keychain = authn.NewMultiKeychain()
	}
	return Open(h, st, opts)
}

// dialAllTo returns a transport that dials addr whatever host a request
// names, so tests can use registry names that are not loopback without
// sending a packet off this machine.
func dialAllTo(addr string) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return t
}

// fsckEROFS runs fsck.erofs on path when it is installed.
func fsckEROFS(t *testing.T, path string) {
	t.Helper()
	bin, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Logf("fsck.erofs not installed; skipping the oracle check of %s", path)
		return
	}
	if out, err := exec.Command(bin, path).CombinedOutput(); err != nil {
		t.Errorf("fsck.erofs %s: %v\n%s", path, err, out)
	}
}

// captureWriter records a response so a test can alter it.
type captureWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.body.Write(b)
}
func (c *captureWriter) WriteHeader(code int) { c.code = code }

// registryServe passes r to the registry behind tr without interception.
func registryServe(tr *testRegistry, w http.ResponseWriter, r *http.Request) {
	tr.inner.ServeHTTP(w, r)
}
