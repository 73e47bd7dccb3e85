package launch

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSecret(t *testing.T) {
	env := map[string]string{"API_KEY": "from-env"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in        string
		wantRef   SecretRef
		wantValue string
		wantErr   string
	}{
		{in: "API_KEY=sk-123@api.example.com", wantRef: SecretRef{Env: "API_KEY", Hosts: []string{"api.example.com"}}, wantValue: "sk-123"},
		{in: "T=a@b@x.test,*.y.test", wantRef: SecretRef{Env: "T", Hosts: []string{"x.test", "*.y.test"}}, wantValue: "a@b"},
		{in: "API_KEY@api.example.com", wantRef: SecretRef{Env: "API_KEY", Hosts: []string{"api.example.com"}, FromEnv: true}, wantValue: "from-env"},
		{in: "MISSING@api.example.com", wantErr: "not set in your environment"},
		{in: "API_KEY=v", wantErr: "no @HOST"},
		{in: "1BAD=v@h", wantErr: "variable name"},
		{in: "A-B=v@h", wantErr: "variable name"},
		{in: "K=@h", wantErr: "empty value"},
		{in: "K=v@", wantErr: "hosts"},
		{in: "K=v@a,,b", wantErr: "hosts"},
		{in: "K=v@http://a", wantErr: "hosts"},
	}
	for _, tc := range tests {
		ref, v, err := ParseSecret(tc.in, getenv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrBadSecret) {
				t.Errorf("ParseSecret(%q) = %v; want ErrBadSecret containing %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "sk-") {
				t.Errorf("ParseSecret(%q) error quotes the value: %v", tc.in, err)
			}
			continue
		}
		if err != nil || v != tc.wantValue || ref.Env != tc.wantRef.Env || ref.FromEnv != tc.wantRef.FromEnv ||
			strings.Join(ref.Hosts, ",") != strings.Join(tc.wantRef.Hosts, ",") {
			t.Errorf("ParseSecret(%q) = %+v, %q, %v; want %+v, %q", tc.in, ref, v, err, tc.wantRef, tc.wantValue)
		}
	}
}

func TestTLSValidate(t *testing.T) {
	for _, tc := range []struct {
		t  *TLS
		ok bool
	}{
		{nil, true},
		{&TLS{OnViolation: "block-and-terminate"}, true},
		{&TLS{OnViolation: "explode"}, false},
		{&TLS{CACert: "/c"}, false},
		{&TLS{CACert: "/c", CAKey: "/k"}, true},
		{&TLS{Ports: []uint16{0}}, false},
	} {
		if err := tc.t.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v; want ok=%v", tc.t, err, tc.ok)
		}
	}
}
