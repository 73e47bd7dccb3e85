package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/store"
)

// Bounds on what a (hostile) manifest may ask of us: the config blob is
// held in memory, and each layer costs a goroutine, a file and a database
// row. Real images stay far below both (Docker's overlay driver stops at 128
// layers).
const (
	maxConfigBytes = 8 << 20
	maxLayers      = 1024
)

// Pull makes ref available locally and returns it. With PullIfMissing (or
// "") a cached image is returned without any network access; PullNever
// fails with ErrNotFound instead of pulling; PullAlways resolves the
// reference at the registry and fetches only blobs not cached yet. Mirrors
// configured for the registry are tried first, in order. progress (may be
// nil) receives events, one call at a time.
func (s *Store) Pull(ctx context.Context, ref string, policy PullPolicy, progress func(Event)) (*Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if policy, err = ParsePullPolicy(string(policy)); err != nil {
		return nil, err
	}
	emit := progressFunc(progress)
	if policy != PullAlways {
		img, err := s.lookup(ctx, r)
		if err == nil {
			emit(Event{Kind: EventComplete, Message: img.Ref})
			return img, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("pull %s: %w", r, err)
		}
		if policy == PullNever {
			return nil, fmt.Errorf("pull %s: not cached and pull policy is never: %w", r, ErrNotFound)
		}
	}
	emit(Event{Kind: EventResolving, Message: r.String()})
	var errs []error
	for _, src := range s.sources(r) {
		img, err := s.pullFrom(ctx, r, src, emit)
		if err == nil {
			emit(Event{Kind: EventComplete, Message: img.Ref})
			return img, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pull %s: %w", r, ctx.Err())
		}
		s.log.Debug("pull source failed", "ref", r.String(), "source", src.Registry, "err", err)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("pull %s: %w", r, errors.Join(errs...))
}

// sources lists where to pull r from: its registry's mirrors, then the
// registry itself.
func (s *Store) sources(r Reference) []Reference {
	var out []Reference
	for _, m := range s.opts.Mirrors[r.Registry] {
		if m, err := normalizeRegistry(m); err == nil && m != r.Registry {
			out = append(out, r.WithRegistry(m))
		}
	}
	return append(out, r)
}

// remoteRepo is an authenticated connection to one repository.
type remoteRepo struct {
	ref    name.Reference
	rt     http.RoundTripper
	client *http.Client
}

func (s *Store) connect(ctx context.Context, src Reference, scope string) (*remoteRepo, error) {
	gref, err := src.ggcr(s.allowHTTP(src.Registry))
	if err != nil {
		return nil, err
	}
	base, err := s.baseTransport()
	if err != nil {
		return nil, err
	}
	auth, err := keychain{s}.Resolve(gref.Context())
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", src.Registry, err)
	}
	rt, err := transport.NewWithContext(ctx, gref.Context().Registry, auth, base, []string{gref.Scope(scope)})
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", src.Registry, err)
	}
	return &remoteRepo{ref: gref, rt: rt, client: &http.Client{Transport: rt}}, nil
}

func (s *Store) platform() v1.Platform {
	if s.opts.Platform != nil {
		return *s.opts.Platform
	}
	return v1.Platform{OS: "linux", Architecture: "amd64"}
}

func (s *Store) pullFrom(ctx context.Context, r, src Reference, emit func(Event)) (*Image, error) {
	repo, err := s.connect(ctx, src, transport.PullScope)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(repo.ref, remote.WithTransport(repo.rt), remote.WithContext(ctx), remote.WithPlatform(s.platform()))
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", src, err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("resolve %s for %s: %w: %w", src, platformString(s.platform()), ErrUnsupported, err)
	}
	mdigest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if r.Digest != "" && desc.MediaType.IsImage() && mdigest.String() != r.Digest {
		return nil, fmt.Errorf("registry served manifest %s for %s: %w", mdigest, r.Digest, ErrDigestMismatch)
	}
	emit(Event{Kind: EventResolved, Message: mdigest.String()})
	mf, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	fetch := func(d v1.Descriptor) fetchFunc { return repo.blobFetcher(d.Digest.String(), d.Size) }
	return s.commit(ctx, r, mdigest.String(), string(mt), mf, fetch, emit)
}

// commit fetches (or finds) the config and layer blobs of manifest mf,
// layers concurrently, and records the image under ref.
func (s *Store) commit(ctx context.Context, r Reference, mdigest, mediaType string, mf *v1.Manifest, fetch func(v1.Descriptor) fetchFunc, emit func(Event)) (*Image, error) {
	if mf.Config.Size > maxConfigBytes || mf.Config.Size < 0 {
		return nil, fmt.Errorf("config of %d bytes: %w", mf.Config.Size, ErrUnsupported)
	}
	if len(mf.Layers) > maxLayers {
		return nil, fmt.Errorf("%d layers, more than %d: %w", len(mf.Layers), maxLayers, ErrUnsupported)
	}
	total := mf.Config.Size
	for _, l := range mf.Layers {
		if l.Size < 0 {
			return nil, fmt.Errorf("layer %s of size %d: %w", l.Digest, l.Size, ErrUnsupported)
		}
		total += l.Size
		if total > s.opts.MaxPullBytes {
			return nil, fmt.Errorf("manifest declares %d+ bytes of blobs: %w", total,
				&rootfs.LimitError{Limit: "bytes pulled per image", Value: s.opts.MaxPullBytes, Env: EnvMaxPullBytes})
		}
	}
	cd := mf.Config.Digest
	if _, err := s.ensureBlob(ctx, cd.String(), mf.Config.Size, fetch(mf.Config), nil); err != nil {
		return nil, err
	}
	raw, err := s.readSmallBlob(cd.String(), maxConfigBytes)
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w: %w", cd, ErrUnsupported, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(mf.Layers) {
		return nil, fmt.Errorf("config lists %d diff_ids for %d layers: %w", len(cfg.RootFS.DiffIDs), len(mf.Layers), ErrUnsupported)
	}
	if err := s.fetchLayers(ctx, mf.Layers, fetch, emit); err != nil {
		return nil, err
	}
	si := store.Image{
		Manifest: store.Manifest{Digest: mdigest, MediaType: mediaType, ConfigDigest: cd.String(),
			Architecture: cfg.Architecture, OS: cfg.OS, Variant: cfg.Variant},
		Config: store.ImageConfig{Digest: cd.String(), Env: cfg.Config.Env, Cmd: cfg.Config.Cmd,
			Entrypoint: cfg.Config.Entrypoint, WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User,
			Labels: cfg.Config.Labels, StopSignal: cfg.Config.StopSignal},
	}
	for i, l := range mf.Layers {
		if _, _, err := splitDigest(cfg.RootFS.DiffIDs[i].String()); err != nil {
			return nil, fmt.Errorf("diff_id %d: %w", i, err)
		}
		si.Manifest.TotalSizeBytes += l.Size
		si.Layers = append(si.Layers, store.Layer{DiffID: cfg.RootFS.DiffIDs[i].String(), BlobDigest: l.Digest.String(),
			MediaType: string(l.MediaType), CompressedSizeBytes: l.Size})
	}
	ref := r.String()
	if r.Registry == "" { // an untagged import
		ref = ""
	}
	stored, err := s.db.PutImage(ctx, ref, si)
	if err != nil {
		return nil, err
	}
	return fromStore(ref, stored), nil
}

// fetchLayers ensures every layer blob, at most Options.Concurrency at a
// time; the first failure cancels the others.
func (s *Store) fetchLayers(ctx context.Context, layers []v1.Descriptor, fetch func(v1.Descriptor) fetchFunc, emit func(Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, s.opts.Concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		if l.Size < 0 {
			return fmt.Errorf("layer %s of size %d: %w", l.Digest, l.Size, ErrUnsupported)
		}
		if seen[l.Digest] {
			continue // the same blob twice (empty layers often are)
		}
		seen[l.Digest] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				return
			}
			d := l.Digest.String()
			emit(Event{Kind: EventLayerDownloadStart, Layer: d, Total: l.Size})
			fetched, err := s.ensureBlob(ctx, d, l.Size, fetch(l), func(cur int64) {
				emit(Event{Kind: EventLayerDownloadProgress, Layer: d, Current: cur, Total: l.Size})
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
				return
			}
			done := Event{Kind: EventLayerDownloadDone, Layer: d, Current: l.Size, Total: l.Size}
			if !fetched {
				done.Message = "cached"
			}
			emit(done)
			emit(Event{Kind: EventLayerMaterialize, Layer: d, Total: l.Size})
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return ctx.Err()
}

// blobFetcher GETs /v2/<repo>/blobs/<digest>, asking for the tail with a
// Range header when resuming (distribution spec: "Fetching Blob Parts").
// The range is closed ("bytes=N-<size-1>"): some registries, ggcr's among
// them, do not understand the open form.
func (r *remoteRepo) blobFetcher(digest string, size int64) fetchFunc {
	repo := r.ref.Context()
	url := repo.Registry.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr() + "/blobs/" + digest
	return func(ctx context.Context, offset int64) (io.ReadCloser, int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, 0, err
		}
		if offset > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-"+strconv.FormatInt(size-1, 10))
		}
		resp, err := r.client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return resp.Body, 0, nil
		case http.StatusPartialContent:
			start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
			if !ok {
				resp.Body.Close()
				return nil, 0, fmt.Errorf("GET blob %s: bad Content-Range %q", digest, resp.Header.Get("Content-Range"))
			}
			return resp.Body, start, nil
		}
		defer resp.Body.Close()
		return nil, 0, transport.CheckError(resp, http.StatusOK)
	}
}

// contentRangeStart parses "bytes START-END/SIZE" (RFC 9110 §14.4).
func contentRangeStart(v string) (int64, bool) {
	v, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(v, "-")
	if !ok {
		return 0, false
	}
	if first == "" || strings.Trim(first, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
