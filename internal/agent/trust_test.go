package agent

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func fakeCert(name string) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(name)}))
}

// makeTree creates files under dir: a key ending in "/" is a directory, a
// value starting with "->" a symlink, anything else a file's contents.
func makeTree(t *testing.T, dir string, tree map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(tree))
	for k := range tree {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := filepath.Join(dir, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		v := tree[k]
		var err error
		switch {
		case strings.HasSuffix(k, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(v[2:], p)
		case v == "fifo":
			err = syscall.Mkfifo(p, 0o644)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCACertFilenamesCoverBothExtensions(t *testing.T) {
	var exts []string
	for _, n := range anchorNames {
		exts = append(exts, filepath.Ext(n))
	}
	for _, want := range []string{".crt", ".pem"} {
		if !slices.Contains(exts, want) {
			t.Errorf("anchorNames = %q; want a %s name", anchorNames, want)
		}
	}
}

func TestInstallTrust(t *testing.T) {
	ca, host, sys := fakeCert("msb ca"), fakeCert("corp root"), fakeCert("system root")
	block := bundleBegin + "\n" + ca + host + bundleEnd + "\n"
	// The layout's paths are under root; ../outside is a sibling of root,
	// standing in for a volume or the host-shared /.msb.
	tests := []struct {
		name       string
		tree       map[string]string
		wantBundle string            // path in the guest
		wantFiles  map[string]string // path under root → contents
		wantLinks  []string          // paths under root still symlinks
		wantAbsent []string          // paths under root that must not exist
		wantErr    string
	}{
		{
			name: "debian",
			tree: map[string]string{
				"etc/ssl/certs/ca-certificates.crt": sys,
				"usr/local/share/ca-certificates/":  "",
			},
			wantBundle: "/etc/ssl/certs/ca-certificates.crt",
			wantFiles: map[string]string{
				"etc/ssl/certs/ca-certificates.crt":          sys + block,
				"usr/local/share/ca-certificates/msb-ca.crt": ca,
				"usr/local/share/ca-certificates/msb-ca.pem": ca,
			},
		},
		{
			name: "rhel, symlinked bundle and /etc/ssl/certs",
			tree: map[string]string{
				"etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem": sys,
				"etc/pki/tls/certs/ca-bundle.crt":                  "->../../ca-trust/extracted/pem/tls-ca-bundle.pem",
				"etc/ssl/certs":                                    "->../pki/tls/certs",
				"etc/pki/ca-trust/source/anchors/":                 "",
			},
			wantBundle: "/etc/pki/tls/certs/ca-bundle.crt",
			wantFiles: map[string]string{
				"etc/pki/tls/certs/ca-bundle.crt":                  sys + block,
				"etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem": sys,
				"etc/pki/ca-trust/source/anchors/msb-ca.crt":       ca,
				"etc/pki/ca-trust/source/anchors/msb-ca.pem":       ca,
			},
			wantLinks: []string{"etc/ssl/certs"},
		},
		{
			name:       "alpine cert.pem, no trailing newline",
			tree:       map[string]string{"etc/ssl/cert.pem": strings.TrimSuffix(sys, "\n")},
			wantBundle: "/etc/ssl/cert.pem",
			wantFiles:  map[string]string{"etc/ssl/cert.pem": sys + block},
		},
		{
			name:       "none: bundle created",
			tree:       map[string]string{"etc/": ""},
			wantBundle: "/etc/ssl/certs/ca-certificates.crt",
			wantFiles:  map[string]string{"etc/ssl/certs/ca-certificates.crt": block},
		},
		{
			name: "bundle links out of the root",
			tree: map[string]string{
				"etc/ssl/certs/ca-certificates.crt": "->../../../../outside/bundle",
				"../outside/bundle":                 sys,
			},
			wantBundle: "/etc/ssl/certs/ca-certificates.crt",
			wantFiles: map[string]string{
				"etc/ssl/certs/ca-certificates.crt": sys + block,
				"../outside/bundle":                 sys,
			},
		},
		{
			name: "bundle's directory links out of the root",
			tree: map[string]string{
				"etc/ssl": "->../../outside/ssl",
				"../outside/ssl/certs/ca-certificates.crt": sys,
			},
			wantFiles:  map[string]string{"../outside/ssl/certs/ca-certificates.crt": sys},
			wantLinks:  []string{"etc/ssl"},
			wantAbsent: []string{"../outside/ssl/certs/.msb-*"},
			wantErr:    "not a directory",
		},
		{
			name: "anchor links out of the root",
			tree: map[string]string{
				"usr/local/share/ca-certificates/":           "",
				"usr/local/share/ca-certificates/msb-ca.crt": "->../../../../../outside/a",
				"etc/pki/ca-trust/source/anchors":            "->../../../../../outside/",
				"../outside/a":                               "keep",
			},
			wantBundle: "/etc/ssl/certs/ca-certificates.crt",
			wantFiles: map[string]string{
				"usr/local/share/ca-certificates/msb-ca.crt": ca,
				"../outside/a": "keep",
			},
			wantLinks:  []string{"etc/pki/ca-trust/source/anchors"},
			wantAbsent: []string{"../outside/msb-ca.crt", "../outside/msb-ca.pem"},
		},
		{
			name:       "fifo at the bundle",
			tree:       map[string]string{"etc/ssl/certs/ca-certificates.crt": "fifo"},
			wantBundle: "/etc/ssl/certs/ca-certificates.crt",
			wantFiles:  map[string]string{"etc/ssl/certs/ca-certificates.crt": block},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			root, staged := filepath.Join(top, "a", "root"), filepath.Join(top, "staged")
			makeTree(t, root, tc.tree)
			makeTree(t, staged, map[string]string{caFile: ca, hostCAsFile: host})
			env, err := installTrust(root, staged)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("installTrust error = %v; want it to contain %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("installTrust: %v", err)
			}
			var want []string
			if tc.wantBundle != "" {
				want = []string{"SSL_CERT_FILE=" + tc.wantBundle, "REQUESTS_CA_BUNDLE=" + tc.wantBundle, "CURL_CA_BUNDLE=" + tc.wantBundle}
			}
			want = append(want, "NODE_EXTRA_CA_CERTS="+filepath.Join(staged, caFile))
			if diff := cmp.Diff(want, env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
			for name, want := range tc.wantFiles {
				p := filepath.Join(root, name)
				if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s: %v, %v; want a regular file", name, fi, err)
					continue
				}
				if got := readFile(t, p); got != want {
					t.Errorf("%s = %q; want %q", name, got, want)
				}
			}
			for _, name := range tc.wantLinks {
				if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("%s: %v, %v; want it still a symlink", name, fi, err)
				}
			}
			for _, name := range tc.wantAbsent {
				if m, _ := filepath.Glob(filepath.Join(root, name)); len(m) > 0 {
					t.Errorf("%q written; want nothing outside the root", m)
				}
			}
			if leftovers, _ := filepath.Glob(filepath.Join(root, "*/*/*/.msb-*")); len(leftovers) > 0 {
				t.Errorf("temporary files left: %q", leftovers)
			}
		})
	}
}

// TestInstallTrustBoots runs installTrust over several boots of one root:
// a second boot changes nothing, a new CA replaces the old one, and a boot
// without certificates removes them.
func TestInstallTrustBoots(t *testing.T) {
	sys, ca1, ca2, host := fakeCert("system root"), fakeCert("ca 1"), fakeCert("ca 2"), fakeCert("corp")
	root, staged := t.TempDir(), t.TempDir()
	makeTree(t, root, map[string]string{
		"etc/ssl/certs/ca-certificates.crt": sys + "# a user's line\n",
		"usr/local/share/ca-certificates/":  "",
	})
	bundle := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")
	anchor := filepath.Join(root, "usr/local/share/ca-certificates/msb-ca.crt")
	boot := func(files map[string]string) []string {
		t.Helper()
		os.RemoveAll(staged)
		makeTree(t, staged, files)
		env, err := installTrust(root, staged)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}

	boot(map[string]string{caFile: ca1, hostCAsFile: host})
	want := sys + "# a user's line\n" + bundleBegin + "\n" + ca1 + host + bundleEnd + "\n"
	if got := readFile(t, bundle); got != want {
		t.Fatalf("first boot: bundle = %q; want %q", got, want)
	}
	before, _ := os.Stat(bundle)
	boot(map[string]string{caFile: ca1, hostCAsFile: host})
	after, _ := os.Stat(bundle)
	if got := readFile(t, bundle); got != want || !os.SameFile(before, after) {
		t.Errorf("second boot rewrote the bundle: %q (same file %v); want %q untouched", got, os.SameFile(before, after), want)
	}

	boot(map[string]string{caFile: ca2})
	want = sys + "# a user's line\n" + bundleBegin + "\n" + ca2 + bundleEnd + "\n"
	if got := readFile(t, bundle); got != want {
		t.Errorf("new CA: bundle = %q; want %q", got, want)
	}
	if got := readFile(t, anchor); got != ca2 {
		t.Errorf("new CA: anchor = %q; want %q", got, ca2)
	}

	if env := boot(map[string]string{hostCAsFile: host}); env != nil {
		t.Errorf("host CAs only: env = %q; want none", env)
	}
	if _, err := os.Lstat(anchor); !os.IsNotExist(err) {
		t.Errorf("host CAs only: anchor still there (%v)", err)
	}

	if env := boot(nil); env != nil {
		t.Errorf("nothing staged: env = %q; want none", env)
	}
	if got, want := readFile(t, bundle), sys+"# a user's line\n"; got != want {
		t.Errorf("nothing staged: bundle = %q; want %q", got, want)
	}
}

func TestInstallTrustRejectsKeys(t *testing.T) {
	root, staged := t.TempDir(), t.TempDir()
	key := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("k")}))
	makeTree(t, staged, map[string]string{caFile: fakeCert("ca") + key})
	env, err := installTrust(root, staged)
	if err == nil || !strings.Contains(err.Error(), `"PRIVATE KEY" block`) {
		t.Errorf("installTrust error = %v; want the key refused", err)
	}
	if env != nil {
		t.Errorf("env = %q; want none", env)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")); !os.IsNotExist(err) {
		t.Errorf("bundle written: %v", err)
	}
}

func TestWithBlock(t *testing.T) {
	blk := bundleBegin + "\nB\n" + bundleEnd + "\n"
	tests := []struct{ name, bundle, block, want string }{
		{"empty", "", blk, blk},
		{"append", "A\n", blk, "A\n" + blk},
		{"no newline", "A", blk, "A\n" + blk},
		{"replace, keep what follows", "A\n" + bundleBegin + "\nold\n" + bundleEnd + "\nC\n", blk, "A\nC\n" + blk},
		{"two blocks", blk + "A\n" + blk, blk, "A\n" + blk},
		{"begin without end", "A\n" + bundleBegin + "\nold\n", blk, "A\n" + blk},
		{"marker not at line start", "x " + bundleBegin + "\n", blk, "x " + bundleBegin + "\n" + blk},
		{"remove", "A\n" + blk, "", "A\n"},
	}
	for _, tc := range tests {
		if got := string(withBlock([]byte(tc.bundle), []byte(tc.block))); got != tc.want {
			t.Errorf("%s: withBlock(%q) = %q; want %q", tc.name, tc.bundle, got, tc.want)
		}
	}
}

func TestStageTLS(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "tls")
	ca := fakeCert("ca")
	makeTree(t, src, map[string]string{caFile: ca})
	makeTree(t, dst, map[string]string{hostCAsFile: "stale"})
	if err := stageTLS(src, dst); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dst, caFile)); got != ca {
		t.Errorf("staged ca = %q; want %q", got, ca)
	}
	if _, err := os.Lstat(filepath.Join(dst, hostCAsFile)); !os.IsNotExist(err) {
		t.Errorf("stale host-cas.pem kept: %v", err)
	}
	if err := stageTLS(filepath.Join(src, "absent"), dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, caFile)); !os.IsNotExist(err) {
		t.Errorf("ca.pem kept without a source: %v", err)
	}

	os.Remove(filepath.Join(src, caFile))
	os.Symlink("/etc/passwd", filepath.Join(src, caFile))
	if err := stageTLS(src, dst); err == nil {
		t.Errorf("symlinked source staged; want an error")
	}
}

func TestAddEnvDefaults(t *testing.T) {
	got := addEnvDefaults([]string{"PATH=/bin", "SSL_CERT_FILE=/mine.pem", "CURL_CA_BUNDLE="},
		[]string{"SSL_CERT_FILE=/etc/b", "CURL_CA_BUNDLE=/etc/b", "NODE_EXTRA_CA_CERTS=/.msb/tls/ca.pem"})
	want := []string{"PATH=/bin", "SSL_CERT_FILE=/mine.pem", "CURL_CA_BUNDLE=", "NODE_EXTRA_CA_CERTS=/.msb/tls/ca.pem"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("addEnvDefaults (-want +got):\n%s", diff)
	}
}
