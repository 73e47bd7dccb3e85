package tlsintercept

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
)

func testSecrets(t testing.TB) *secretSet {
	t.Helper()
	ss, err := newSecretSet([]Secret{
		{Env: "A", Value: "value-a", Hosts: []string{"a.test"}},
		{Env: "A_LONG", Value: "LONG-value-xyz-0123456789", Hosts: []string{"*.a.test"}},
		{Env: "B", Value: "vb", Placeholder: "@@B@@", Hosts: []string{"*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func TestRewriteHeader(t *testing.T) {
	ss := testSecrets(t)
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name     string
		header   string // name: value
		hosts    []string
		want     string
		wantViol string
	}{
		{"plain", "X-K: $MSB_A", []string{"a.test"}, "$MSB_A→value-a", ""},
		{"longest match", "X-K: $MSB_A_LONG", []string{"x.a.test"}, "LONG-value-xyz-0123456789", ""},
		{"prefix is another secret", "X-K: $MSB_A_LONG", []string{"a.test"}, "", "A_LONG"},
		{"custom placeholder, any host", "X-K: x@@B@@y", []string{"z.test"}, "xvby", ""},
		{"no TLS identity", "X-K: @@B@@", []string{""}, "", "B"},
		{"SNI ok, Host not", "X-K: $MSB_A", []string{"a.test", "evil.test"}, "", "A"},
		{"basic decoded", "Authorization: " + basic("u:$MSB_A"), []string{"a.test"}, basic("u:value-a"), ""},
		{"basic lowercase scheme", "Authorization: basic " + base64.StdEncoding.EncodeToString([]byte("$MSB_A:")), []string{"a.test"}, "basic " + base64.StdEncoding.EncodeToString([]byte("value-a:")), ""},
		{"basic violation", "Authorization: " + basic("$MSB_A:p"), []string{"b.test"}, "", "A"},
		{"basic not base64", "Authorization: Basic $MSB_A", []string{"a.test"}, "Basic value-a", ""},
		{"untouched", "X-K: $MSB_ $ $$", []string{"b.test"}, "$MSB_ $ $$", ""},
		{"name case-insensitive", "X-$msb_a: 1", []string{"b.test"}, "", "A"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name, value, _ := strings.Cut(tc.header, ": ")
			h := http.Header{}
			h[http.CanonicalHeaderKey(name)] = []string{value}
			_, viol := ss.rewriteHeader(h, tc.hosts)
			gotViol := ""
			if viol >= 0 {
				gotViol = ss.secrets[viol].env
			}
			if gotViol != tc.wantViol {
				t.Fatalf("violation %q; want %q", gotViol, tc.wantViol)
			}
			want := tc.want
			if _, after, ok := strings.Cut(want, "→"); ok {
				want = after
			}
			if viol < 0 {
				if got := h.Get(name); got != want {
					t.Errorf("%s = %q; want %q", name, got, want)
				}
			} else if got := h[http.CanonicalHeaderKey(name)][0]; got != value {
				t.Errorf("header changed on violation: %q", got)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	const val = "s3cr3t-value"
	ok := Secret{Env: "K", Value: val, Hosts: []string{"a.test"}}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no CA", Config{}},
		{"empty env", Config{Secrets: []Secret{{Value: val, Hosts: []string{"a.test"}}}}},
		{"duplicate env", Config{Secrets: []Secret{ok, ok}}},
		{"duplicate placeholder", Config{Secrets: []Secret{ok, {Env: "J", Placeholder: "$MSB_K", Value: val, Hosts: []string{"a.test"}}}}},
		{"empty value", Config{Secrets: []Secret{{Env: "K", Hosts: []string{"a.test"}}}}},
		{"value with newline", Config{Secrets: []Secret{{Env: "K", Value: val + "\r\nX: y", Hosts: []string{"a.test"}}}}},
		{"no hosts", Config{Secrets: []Secret{{Env: "K", Value: val}}}},
		{"bad host", Config{Secrets: []Secret{{Env: "K", Value: val, Hosts: []string{"a b"}}}}},
		{"bad wildcard", Config{Secrets: []Secret{{Env: "K", Value: val, Hosts: []string{"*a.test"}}}}},
		{"short placeholder", Config{Secrets: []Secret{{Env: "K", Value: val, Placeholder: "$K", Hosts: []string{"a.test"}}}}},
		{"bad bypass", Config{Bypass: []string{"*."}}},
		{"bad action", Config{OnViolation: 7}},
	}
	ca := testCA(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "no CA" {
				tc.cfg.CA = ca
			}
			_, err := New(tc.cfg)
			if err == nil {
				t.Fatal("New = nil error")
			}
			if strings.Contains(err.Error(), val) {
				t.Errorf("error %q quotes the value", err)
			}
		})
	}
}

func TestScrubReader(t *testing.T) {
	ss := testSecrets(t)
	tests := []struct{ in, want string }{
		{"", ""},
		{"nothing here", "nothing here"},
		{"key=value-a.", "key=$MSB_A."},
		{"LONG-value-xyz-0123456789", "$MSB_A_LONG"},
		{"vbvb value-avalue-a", "@@B@@@@B@@ $MSB_A$MSB_A"},
		{"trailing value-", "trailing value-"},
		{strings.Repeat("x", 70000) + "value-a" + strings.Repeat("y", 5), strings.Repeat("x", 70000) + "$MSB_A" + strings.Repeat("y", 5)},
	}
	for _, tc := range tests {
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"whole":    func(r io.Reader) io.Reader { return r },
			"one byte": iotest.OneByteReader,
			"half":     iotest.HalfReader,
		} {
			got, err := io.ReadAll(newScrubReader(io.NopCloser(wrap(strings.NewReader(tc.in))), ss))
			if err != nil || string(got) != tc.want {
				t.Errorf("%s: scrub(%.40q) = %.40q, %v; want %.40q", name, tc.in, got, err, tc.want)
			}
		}
		if got := ss.scrubString(tc.in); got != tc.want {
			t.Errorf("scrubString(%.40q) = %.40q; want %.40q", tc.in, got, tc.want)
		}
	}
}

func FuzzRewriteHeaders(f *testing.F) {
	for _, s := range []struct{ name, value, host string }{
		{"Authorization", "Bearer $MSB_A", "a.test"},
		{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:$MSB_A")), "evil.test"},
		{"X-K", "$MSB_A_LONG$MSB_A@@B@@", "x.a.test"},
		{"X-$MSB_A", "1", "a.test"},
		{"Authorization", "Basic JE1TQl9B", ""},
	} {
		f.Add(s.name, s.value, s.host)
	}
	ss := testSecrets(f)
	f.Fuzz(func(t *testing.T, name, value, host string) {
		hosts := []string{normalizeHost(host)}
		h := map[string][]string{name: {value}}
		_, viol := ss.rewriteHeader(h, hosts)
		out := h[name][0]
		if viol >= 0 {
			if out != value {
				t.Fatalf("violation but the header changed: %q → %q", value, out)
			}
			return
		}
		if len(out) > ss.ratio*len(value)+8 {
			t.Fatalf("output %d bytes from %d; bound %d", len(out), len(value), ss.ratio*len(value)+8)
		}
		for _, s := range ss.secrets {
			if !s.allowed(hosts) && strings.Contains(out, s.value) && !strings.Contains(value, s.value) {
				t.Fatalf("value of %s reached disallowed host %q: %q → %q", s.env, host, value, out)
			}
		}
		if !ss.secrets[0].allowed(hosts) && !ss.secrets[1].allowed(hosts) && !ss.secrets[2].allowed(hosts) && out != value {
			t.Fatalf("no secret allowed for %q, yet %q → %q", host, value, out)
		}
	})
}
