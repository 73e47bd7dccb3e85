package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Manifest constants (reference §10.3).
const (
	SchemaVersion = 1
	FormatRaw     = "raw"
	FSTypeExt4    = "ext4"
	// UpperFile is the name of the upper image inside a snapshot directory.
	UpperFile = "upper.ext4"
	// ManifestFile is the name of the manifest inside a snapshot directory.
	ManifestFile = "manifest.json"
)

// Limits on manifests read from disk or archives.
const (
	maxManifestBytes = 64 << 10
	maxLabels        = 64
	maxLabelBytes    = 1 << 10
	maxRefBytes      = 1 << 10
)

// Manifest is a snapshot's manifest.json. Its id is ID(); see Canonical for
// the byte form that is hashed.
type Manifest struct {
	Schema int    `json:"schema"`
	Format string `json:"format"`
	FSType string `json:"fstype"`
	Image  Image  `json:"image"`
	// Parent is the id of the snapshot the source sandbox was created
	// from, "" for none (written as null).
	Parent    string            `json:"-"`
	CreatedAt time.Time         `json:"-"`
	Labels    map[string]string `json:"labels"`
	Upper     Upper             `json:"upper"`
	// SourceSandbox is the name of the sandbox the snapshot was taken of.
	SourceSandbox string `json:"source_sandbox"`
}

// Image names the image the upper layer sits on.
type Image struct {
	Reference      string `json:"reference"`
	ManifestDigest string `json:"manifest_digest"`
}

// Upper describes the upper image file.
type Upper struct {
	File      string    `json:"file"`
	SizeBytes int64     `json:"size_bytes"`
	Integrity Integrity `json:"integrity"`
}

// Integrity is the digest of the upper image; Algorithm is always
// DigestAlgorithm.
type Integrity struct {
	Algorithm string `json:"algorithm"`
	Digest    string `json:"digest"`
}

// wireManifest is Manifest as JSON: Parent as null or a string and
// CreatedAt as RFC 3339 UTC with nanoseconds trimmed of trailing zeros.
type wireManifest struct {
	Schema        int               `json:"schema"`
	Format        string            `json:"format"`
	FSType        string            `json:"fstype"`
	Image         Image             `json:"image"`
	Parent        *string           `json:"parent"`
	CreatedAt     string            `json:"created_at"`
	Labels        map[string]string `json:"labels"`
	Upper         Upper             `json:"upper"`
	SourceSandbox string            `json:"source_sandbox"`
}

// Canonical returns the canonical JSON of m, the bytes its id hashes and
// the bytes written to manifest.json:
//
//   - one JSON object, every object's keys sorted by their UTF-8 bytes;
//   - no whitespace outside strings and no trailing newline;
//   - strings escaped as Go's encoding/json does with HTML escaping off
//     (", \ and control characters escaped, \u2028 and \u2029 escaped,
//     everything else literal UTF-8);
//   - integers in plain decimal; parent null when absent, labels {} when
//     empty; created_at in RFC 3339 UTC, fractional seconds without
//     trailing zeros.
//
// It fails if m does not pass Validate.
func (m Manifest) Canonical() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := wireManifest{Schema: m.Schema, Format: m.Format, FSType: m.FSType, Image: m.Image,
		CreatedAt: m.CreatedAt.UTC().Format(time.RFC3339Nano), Labels: m.Labels, Upper: m.Upper,
		SourceSandbox: m.SourceSandbox}
	if m.Parent != "" {
		w.Parent = &m.Parent
	}
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	// Encode the struct, then re-encode it as a generic value: encoding/json
	// writes map keys sorted, which sorts every object's keys.
	raw, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ID returns the snapshot id: "sha256:" and the hex SHA-256 of Canonical.
func (m Manifest) ID() (string, error) {
	b, err := m.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ErrBadManifest is a manifest that does not parse or validate.
var ErrBadManifest = errors.New("bad snapshot manifest")

// Validate checks the fields msb relies on: the schema, format and file
// type it can boot, the upper file name, digests in their fixed forms and
// bounded strings.
func (m Manifest) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, a...))
	}
	switch {
	case m.Schema != SchemaVersion:
		return bad("schema %d, want %d", m.Schema, SchemaVersion)
	case m.Format != FormatRaw:
		return bad("format %q, want %q", m.Format, FormatRaw)
	case m.FSType != FSTypeExt4:
		return bad("fstype %q, want %q", m.FSType, FSTypeExt4)
	case m.Upper.File != UpperFile:
		return bad("upper file %q, want %q", m.Upper.File, UpperFile)
	case m.Upper.SizeBytes <= 0 || m.Upper.SizeBytes > MaxUpperBytes:
		return bad("upper size %d out of range (1 to %d)", m.Upper.SizeBytes, int64(MaxUpperBytes))
	case m.Upper.Integrity.Algorithm != DigestAlgorithm:
		return bad("integrity algorithm %q, want %q", m.Upper.Integrity.Algorithm, DigestAlgorithm)
	case !validDigest(m.Upper.Integrity.Digest):
		return bad("integrity digest %q is not sha256:<64 hex>", m.Upper.Integrity.Digest)
	case !validDigest(m.Image.ManifestDigest):
		return bad("image manifest digest %q is not sha256:<64 hex>", m.Image.ManifestDigest)
	case m.Parent != "" && !validDigest(m.Parent):
		return bad("parent %q is not sha256:<64 hex>", m.Parent)
	case m.Image.Reference == "" || len(m.Image.Reference) > maxRefBytes || !printable(m.Image.Reference):
		return bad("image reference %q", m.Image.Reference)
	case len(m.SourceSandbox) > maxRefBytes || !printable(m.SourceSandbox):
		return bad("source sandbox %q", m.SourceSandbox)
	case m.CreatedAt.IsZero():
		return bad("no created_at")
	case len(m.Labels) > maxLabels:
		return bad("%d labels, at most %d", len(m.Labels), maxLabels)
	}
	for k, v := range m.Labels {
		if err := ValidLabel(k, v); err != nil {
			return fmt.Errorf("%w: %w", ErrBadManifest, err)
		}
	}
	return nil
}

// ValidLabel checks one label: a non-empty printable key without '=' and a
// printable value, each at most 1 KiB.
func ValidLabel(k, v string) error {
	switch {
	case k == "" || strings.Contains(k, "="):
		return fmt.Errorf("label %q: want a non-empty key without '='", k)
	case len(k) > maxLabelBytes || len(v) > maxLabelBytes:
		return fmt.Errorf("label %q: longer than %d bytes", k, maxLabelBytes)
	case !printable(k) || !printable(v):
		return fmt.Errorf("label %q: control characters not allowed", k)
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters,
// so names from a hostile manifest cannot rewrite the user's terminal.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

func validDigest(d string) bool {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ParseManifest parses and validates manifest JSON read from disk or an
// archive: at most 64 KiB, unknown fields and trailing data rejected.
func ParseManifest(b []byte) (Manifest, error) {
	if len(b) > maxManifestBytes {
		return Manifest{}, fmt.Errorf("%w: larger than %d bytes", ErrBadManifest, maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w wireManifest
	if err := dec.Decode(&w); err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Manifest{}, fmt.Errorf("%w: trailing data", ErrBadManifest)
	}
	t, err := time.Parse(time.RFC3339Nano, w.CreatedAt)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: created_at: %w", ErrBadManifest, err)
	}
	m := Manifest{Schema: w.Schema, Format: w.Format, FSType: w.FSType, Image: w.Image, CreatedAt: t.UTC(),
		Labels: w.Labels, Upper: w.Upper, SourceSandbox: w.SourceSandbox}
	if w.Parent != nil {
		if *w.Parent == "" {
			return Manifest{}, fmt.Errorf("%w: empty parent (use null)", ErrBadManifest)
		}
		m.Parent = *w.Parent
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
