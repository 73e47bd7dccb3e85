package image

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultRegistry is the registry of references that name none, as Docker
// resolves them.
const DefaultRegistry = "docker.io"

// Reference is a parsed, normalized image reference.
type Reference struct {
	Registry   string // "docker.io", "ghcr.io", "localhost:5000"
	Repository string // "library/python", "o/r"
	Tag        string // "" only when Digest is set
	Digest     string // "sha256:<64 hex>" or ""
}

// Limits from the distribution reference grammar (docker/distribution
// reference/regexp.go): a name is at most 255 bytes, a tag at most 128.
const (
	maxNameLen = 255
	maxTagLen  = 128
)

// ParseReference parses a reference as Docker users write it and fills in
// Docker's defaults: "python" is docker.io/library/python:latest,
// "localhost:5000/x" is registry localhost:5000 with repository x. The first
// path component is a registry when it contains "." or ":" or is
// "localhost"; a tag is kept next to a digest, but the digest decides what
// is pulled.
func ParseReference(s string) (Reference, error) {
	bad := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("%w %q: %s", ErrInvalidReference, s, why)
	}
	if s == "" {
		return bad("empty")
	}
	var r Reference
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		d := rest[i+1:]
		if err := checkDigest(d); err != nil {
			return bad(err.Error())
		}
		r.Digest = d
		rest = rest[:i]
	}
	// A tag follows the last ':' after the last '/', so the port of
	// "localhost:5000/x" is not taken for one.
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		t := rest[i+1:]
		if !validTag(t) {
			return bad("tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'")
		}
		r.Tag = t
		rest = rest[:i]
	}
	if rest == "" {
		return bad("no repository")
	}
	repo := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		first := rest[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			if err := checkDomain(first); err != nil {
				return bad(err.Error())
			}
			r.Registry = first
			repo = rest[i+1:]
		}
	}
	switch r.Registry {
	case "", "index.docker.io", "registry-1.docker.io":
		r.Registry = DefaultRegistry
	}
	if err := checkRepository(repo); err != nil {
		return bad(err.Error())
	}
	if r.Registry == DefaultRegistry && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	r.Repository = repo
	if len(r.Registry)+1+len(r.Repository) > maxNameLen {
		return bad(fmt.Sprintf("name longer than %d bytes", maxNameLen))
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// String returns the normalized form, e.g. "docker.io/library/python:3.12".
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Name is registry/repository without tag or digest.
func (r Reference) Name() string { return r.Registry + "/" + r.Repository }

// WithRegistry returns r served by another registry (a mirror).
func (r Reference) WithRegistry(reg string) Reference {
	r.Registry = reg
	return r
}

// ggcr converts r for go-containerregistry. insecure lets ggcr use plain
// HTTP for any host (we still guard it, see httpGuard).
func (r Reference) ggcr(insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	var (
		ref name.Reference
		err error
	)
	if r.Digest != "" {
		ref, err = name.NewDigest(r.Name()+"@"+r.Digest, opts...)
	} else {
		ref, err = name.NewTag(r.Name()+":"+r.Tag, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidReference, r, err)
	}
	return ref, nil
}

func validTag(t string) bool {
	if t == "" || len(t) > maxTagLen || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// checkDigest accepts the digests OCI registries serve (image-spec
// descriptor.md: sha256 with 64 and sha512 with 128 lowercase hex digits).
func checkDigest(d string) error {
	alg, hex, ok := strings.Cut(d, ":")
	want := map[string]int{"sha256": 64, "sha512": 128}[alg]
	if !ok || want == 0 {
		return fmt.Errorf("digest must be sha256:<hex> or sha512:<hex>")
	}
	if len(hex) != want {
		return fmt.Errorf("%s digest must have %d hex digits", alg, want)
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("digest must be lowercase hex")
		}
	}
	return nil
}

// checkRepository applies the path-component grammar
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* to each '/'-separated component.
func checkRepository(repo string) error {
	for _, c := range strings.Split(repo, "/") {
		if c == "" {
			return fmt.Errorf("empty path component")
		}
		if !isLowerAlnum(c[0]) || !isLowerAlnum(c[len(c)-1]) {
			return fmt.Errorf("path component %q must start and end with a lowercase letter or digit", c)
		}
		for i := 0; i < len(c); {
			if isLowerAlnum(c[i]) {
				i++
				continue
			}
			j := i
			for j < len(c) && !isLowerAlnum(c[j]) {
				j++
			}
			switch sep := c[i:j]; {
			case sep == "." || sep == "_" || sep == "__" || strings.Trim(sep, "-") == "":
			default:
				return fmt.Errorf("path component %q: separator %q not allowed (lowercase letters, digits, '.', '_', '__', '-')", c, sep)
			}
			i = j
		}
	}
	return nil
}

// checkDomain accepts host[:port] where host is a DNS name or a bracketed
// IPv6 address.
func checkDomain(d string) error {
	host, port := d, ""
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 0 {
			return fmt.Errorf("registry %q: unclosed '['", d)
		}
		if ip := net.ParseIP(d[1:end]); ip == nil || ip.To4() != nil {
			return fmt.Errorf("registry %q: bad IPv6 address", d)
		}
		host, port = "", d[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return fmt.Errorf("registry %q: junk after ']'", d)
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.IndexByte(d, ':'); i >= 0 {
		host, port = d[:i], d[i+1:]
	}
	if port != "" || strings.HasSuffix(d, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("registry %q: bad port", d)
		}
	}
	if host == "" {
		if strings.HasPrefix(d, "[") {
			return nil
		}
		return fmt.Errorf("registry %q: empty host", d)
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("registry %q: bad host label", d)
		}
		if !isAlnum(label[0]) || !isAlnum(label[len(label)-1]) {
			return fmt.Errorf("registry %q: host label %q must start and end with a letter or digit", d, label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return fmt.Errorf("registry %q: bad character %q in host", d, c)
			}
		}
	}
	return nil
}
