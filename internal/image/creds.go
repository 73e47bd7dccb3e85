package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/msb-go/msb/internal/home"
)

// credentials is one saved login, secrets/registries/<registry>.json.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// maxCredentialsBytes bounds a credentials file read back from disk.
const maxCredentialsBytes = 64 << 10

func (s *Store) credsDir() string { return filepath.Join(s.home.Root, "secrets", "registries") }

// normalizeRegistry maps Docker Hub's aliases to one name and validates
// registry as a host[:port], so it is safe as a file name.
func normalizeRegistry(registry string) (string, error) {
	r := strings.ToLower(strings.TrimSpace(registry))
	r = strings.TrimPrefix(strings.TrimPrefix(r, "https://"), "http://")
	r = strings.TrimSuffix(r, "/")
	switch r {
	case "index.docker.io", "registry-1.docker.io":
		r = DefaultRegistry
	}
	if err := checkDomain(r); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	return r, nil
}

func (s *Store) credsPath(registry string) string {
	return filepath.Join(s.credsDir(), registry+".json")
}

// Login checks username and password against registry (GET /v2/ with the
// registry's auth challenge answered) and saves them for later pulls, mode
// 0600 under MSB_HOME/secrets/registries/. A rejected login returns
// ErrUnauthorized and saves nothing.
func (s *Store) Login(ctx context.Context, registry, username, password string) error {
	reg, err := normalizeRegistry(registry)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if username == "" || password == "" {
		return fmt.Errorf("login %s: username and password are required", reg)
	}
	if err := s.checkLogin(ctx, reg, username, password); err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	data, err := json.Marshal(credentials{Username: username, Password: password})
	if err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	if err := home.EnsureDir(s.credsDir()); err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	if err := writeFileAtomic(s.credsPath(reg), data, home.FileMode); err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	return nil
}

func (s *Store) checkLogin(ctx context.Context, reg, username, password string) error {
	base, err := s.baseTransport()
	if err != nil {
		return err
	}
	var opts []name.Option
	if s.allowHTTP(reg) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.NewRegistry(registryHost(reg), opts...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	rt, err := transport.NewWithContext(ctx, r, auth, base, nil)
	if err != nil {
		if isUnauthorized(err) {
			return ErrUnauthorized
		}
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Scheme()+"://"+r.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return ErrUnauthorized
	case resp.StatusCode >= 300:
		return fmt.Errorf("GET /v2/: %s", resp.Status)
	}
	return nil
}

func isUnauthorized(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden)
}

// registryHost is the host ggcr must dial for a normalized registry name.
func registryHost(reg string) string {
	if reg == DefaultRegistry {
		return name.DefaultRegistry
	}
	return reg
}

// Logout forgets the saved login for registry; ErrNotFound if there is none.
func (s *Store) Logout(registry string) error {
	reg, err := normalizeRegistry(registry)
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if err := os.Remove(s.credsPath(reg)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("logout %s: not logged in: %w", reg, ErrNotFound)
		}
		return fmt.Errorf("logout %s: %w", reg, err)
	}
	return nil
}

// Login is a saved registry login as Logins lists it (no password).
type Login struct {
	Registry string
	Username string
}

// Logins lists the saved logins, sorted by registry.
func (s *Store) Logins() ([]Login, error) {
	ents, err := os.ReadDir(s.credsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list logins: %w", err)
	}
	var out []Login
	for _, e := range ents {
		reg, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		c, err := s.readCreds(reg)
		if err != nil {
			return nil, fmt.Errorf("list logins: %w", err)
		}
		out = append(out, Login{Registry: reg, Username: c.Username})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Registry < out[j].Registry })
	return out, nil
}

func (s *Store) readCreds(reg string) (credentials, error) {
	f, err := os.Open(s.credsPath(reg))
	if err != nil {
		return credentials{}, err
	}
	defer f.Close()
	var c credentials
	dec := json.NewDecoder(io.LimitReader(f, maxCredentialsBytes))
	if err := dec.Decode(&c); err != nil {
		return credentials{}, fmt.Errorf("read credentials for %s: %w", reg, err)
	}
	return c, nil
}

// keychain resolves credentials from msb's own store first (what the user
// told msb), then Docker's config and credential helpers, then anonymous.
type keychain struct{ s *Store }

func (k keychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	reg, err := normalizeRegistry(res.RegistryStr())
	if err == nil {
		c, err := k.s.readCreds(reg)
		if err == nil {
			return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password}), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return k.s.fallbackKeychain().Resolve(res)
}

func (s *Store) fallbackKeychain() authn.Keychain {
	if s.opts.Keychain != nil {
		return s.opts.Keychain
	}
	return authn.DefaultKeychain
}
