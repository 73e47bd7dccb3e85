package msb

import (
	"context"

	"github.com/msb-go/msb/internal/image"
)

// Errors of ImageStore, for errors.Is.
var (
	// ErrImageNotFound: the image is not in the local cache.
	ErrImageNotFound = image.ErrNotFound
	// ErrImageInUse: Remove without force of an image a sandbox uses.
	ErrImageInUse = image.ErrInUse
)

// Image is an OCI image in the local cache.
type Image struct {
	// Reference is the normalized name ("docker.io/library/python:3.12"),
	// or "" for an image known only by digest.
	Reference      string
	ManifestDigest string
	Platform       string // os/arch[/variant]
	// SizeBytes is the sum of the compressed layer sizes.
	SizeBytes int64
	Layers    []string // compressed layer digests, bottom first
	Config    ImageConfig
}

// ImageConfig is the part of an image's config that sandboxes use.
type ImageConfig struct {
	Env        []string // KEY=VALUE
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	User       string
	StopSignal string
}

// ImageStore manages the cached images of an msb home. Its methods open the
// state store for the duration of the call; it is safe for concurrent use.
type ImageStore struct {
	opts []Option
}

// Images returns the image cache of the home opts name (WithHome), else of
// $MSB_HOME or ~/.msb. Registry settings come from the environment, as for
// the msb command.
func Images(opts ...Option) *ImageStore { return &ImageStore{opts: opts} }

func (is *ImageStore) with(ctx context.Context, fn func(*image.Store) error) error {
	_, m, err := open(ctx, is.opts)
	if err != nil {
		return err
	}
	defer m.Close()
	ro, err := image.EnvOptions()
	if err != nil {
		return err
	}
	return convertErr(fn(image.Open(m.Home, m.Store, ro)))
}

// List returns every cached image reference.
func (is *ImageStore) List(ctx context.Context) ([]Image, error) {
	var out []Image
	err := is.with(ctx, func(st *image.Store) error {
		list, err := st.List(ctx)
		for _, img := range list {
			out = append(out, toImage(img))
		}
		return err
	})
	return out, err
}

// Inspect returns the cached image ref names (a reference or a manifest
// digest); ErrNotFound when it is not cached.
func (is *ImageStore) Inspect(ctx context.Context, ref string) (Image, error) {
	var out Image
	err := is.with(ctx, func(st *image.Store) error {
		img, err := st.Inspect(ctx, ref)
		if err == nil {
			out = toImage(*img)
		}
		return err
	})
	return out, err
}

// Remove removes the reference ref. An image a sandbox uses is refused
// unless force, which removes only the reference. Blobs stay until Prune.
func (is *ImageStore) Remove(ctx context.Context, ref string, force bool) error {
	return is.with(ctx, func(st *image.Store) error { return st.Remove(ctx, ref, force) })
}

// Prune deletes cached data that no image reference or sandbox needs and
// returns the bytes freed.
func (is *ImageStore) Prune(ctx context.Context) (int64, error) {
	var freed int64
	err := is.with(ctx, func(st *image.Store) error {
		var err error
		freed, err = st.Prune(ctx)
		return err
	})
	return freed, err
}

func toImage(img image.Image) Image {
	return Image{
		Reference: img.Ref, ManifestDigest: img.ManifestDigest, Platform: img.Platform,
		SizeBytes: img.SizeBytes, Layers: img.Layers,
		Config: ImageConfig{Env: img.Config.Env, Entrypoint: img.Config.Entrypoint, Cmd: img.Config.Cmd,
			WorkingDir: img.Config.WorkingDir, User: img.Config.User, StopSignal: img.Config.StopSignal},
	}
}
