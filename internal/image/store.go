package image

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/store"
)

// Options configure a Store. The zero value pulls linux/amd64 over HTTPS
// with the system roots, plain HTTP to loopback registries only.
type Options struct {
	// Insecure lists registries (host[:port], as in references) that may be
	// reached over plain HTTP or HTTPS without certificate checks.
	Insecure []string
	// CAFiles are PEM files of extra trusted certificate authorities.
	CAFiles []string
	// Mirrors maps a registry ("docker.io", "ghcr.io") to mirrors tried in
	// order before it; a failing mirror falls through to the next.
	Mirrors map[string][]string
	// Platform selects the manifest of a multi-platform index; nil is
	// linux/amd64.
	Platform *v1.Platform
	// Logger receives debug records (mirror fallbacks, re-downloads); nil
	// discards them.
	Logger *slog.Logger
	// Keychain replaces Docker's config and credential helpers (tried after
	// msb's own logins); nil is authn.DefaultKeychain.
	Keychain authn.Keychain
	// Transport replaces the base HTTP transport (tests dial fake hosts
	// with it); CAFiles do not apply to it.
	Transport http.RoundTripper
	// Concurrency bounds parallel blob downloads of one pull; 0 is 4.
	Concurrency int
	// Limits bound what building an image's root filesystem may consume
	// (inodes, bytes, memory, free disk); zero fields take the defaults.
	// MinFree also applies to downloads.
	Limits rootfs.Limits
	// MaxPullBytes caps the sum of the blob sizes an image's manifest
	// declares (config and layers, compressed); 0 is DefaultMaxPullBytes.
	MaxPullBytes int64
}

// DefaultMaxPullBytes is the default Options.MaxPullBytes.
const DefaultMaxPullBytes = 32 << 30

// Store is the local image cache: content-addressed blobs on disk, image
// records in the state database, flattened EROFS images per manifest. It is
// safe for concurrent use, also across processes (file locks).
type Store struct {
	home home.Home
	db   *store.Store
	opts Options
	log  *slog.Logger

	transportOnce sync.Once
	transport     http.RoundTripper
	transportErr  error
}

// Open returns a Store over the home's cache directories and st. It does no
// I/O; directories are created on first use.
func Open(h home.Home, st *store.Store, opts Options) *Store {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.MaxPullBytes <= 0 {
		opts.MaxPullBytes = DefaultMaxPullBytes
	}
	if opts.Limits.MinFree <= 0 {
		opts.Limits.MinFree = rootfs.DefaultMinFree
	}
	return &Store{home: h, db: st, opts: opts, log: log}
}

// PullPolicy says when Pull contacts the registry.
type PullPolicy string

// Pull policies (reference §10.1).
const (
	// PullIfMissing uses a cached image without touching the network and
	// pulls otherwise. It is the default ("").
	PullIfMissing PullPolicy = "if-missing"
	// PullAlways resolves the reference at the registry every time; blobs
	// already cached are not downloaded again.
	PullAlways PullPolicy = "always"
	// PullNever uses only the cache and fails with ErrNotFound without it.
	PullNever PullPolicy = "never"
)

// ParsePullPolicy checks a policy named on a command line.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case "", PullIfMissing:
		return PullIfMissing, nil
	case PullAlways, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("pull policy %q: want if-missing, always or never", s)
}

// Event kinds, in the order a pull reports them.
const (
	EventResolving             = "Resolving"             // Message: the reference
	EventResolved              = "Resolved"              // Message: the manifest digest
	EventLayerDownloadStart    = "LayerDownloadStart"    // Layer, Total
	EventLayerDownloadProgress = "LayerDownloadProgress" // Layer, Current, Total
	EventLayerDownloadDone     = "LayerDownloadDone"     // Layer, Total; Message "cached" if nothing was fetched
	EventLayerMaterialize      = "LayerMaterialize"      // Layer: verified and stored
	EventComplete              = "Complete"              // Message: the normalized reference
)

// Event is one progress report of Pull or Import. Layer is a blob digest.
type Event struct {
	Kind           string
	Layer          string
	Current, Total int64
	Message        string
}

// Config is the runtime part of an image's configuration, merged under the
// user's options when a sandbox is created.
type Config struct {
	Env        []string // KEY=VALUE
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	User       string
	StopSignal string
}

// Image is a cached image.
type Image struct {
	Ref            string // normalized, e.g. "docker.io/library/python:3.12"; "" if untagged
	ManifestDigest string
	Config         Config
	LayerDiffIDs   []string
	// Layers are the compressed layer blobs, bottom first, parallel to
	// LayerDiffIDs.
	Layers []string
	// SizeBytes is the sum of the compressed layer sizes.
	SizeBytes int64
	// Platform is "os/arch[/variant]".
	Platform string
}

func fromStore(ref string, si store.Image) *Image {
	img := &Image{
		Ref:            ref,
		ManifestDigest: si.Manifest.Digest,
		Config: Config{
			Env: si.Config.Env, Entrypoint: si.Config.Entrypoint, Cmd: si.Config.Cmd,
			WorkingDir: si.Config.WorkingDir, User: si.Config.User, StopSignal: si.Config.StopSignal,
		},
		SizeBytes: si.Manifest.TotalSizeBytes,
		Platform:  si.Manifest.OS + "/" + si.Manifest.Architecture,
	}
	if si.Manifest.Variant != "" {
		img.Platform += "/" + si.Manifest.Variant
	}
	for _, l := range si.Layers {
		img.LayerDiffIDs = append(img.LayerDiffIDs, l.DiffID)
		img.Layers = append(img.Layers, l.BlobDigest)
	}
	return img
}

// lookup returns the cached image for r (by its normalized reference, else
// by its manifest digest), or an error wrapping ErrNotFound.
func (s *Store) lookup(ctx context.Context, r Reference) (*Image, error) {
	var (
		si  store.Image
		err error
	)
	// By reference first: a digest reference to a multi-platform index is
	// recorded under that reference, while the manifest stored is the
	// platform's.
	si, err = s.db.ImageByRef(ctx, r.String())
	if errors.Is(err, store.ErrNotFound) && r.Digest != "" {
		si, err = s.db.ImageByDigest(ctx, r.Digest)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", r, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return fromStore(r.String(), si), nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory and a rename, so readers never see a partial file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// progressFunc serializes calls to a caller's progress callback, which
// concurrent layer downloads would otherwise make from many goroutines.
func progressFunc(fn func(Event)) func(Event) {
	if fn == nil {
		return func(Event) {}
	}
	var mu sync.Mutex
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		fn(e)
	}
}
