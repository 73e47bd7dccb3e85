package image

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// LayerFromDir returns a gzip layer holding the tree at dir as it is on
// disk: owners, modes (setuid included), symlinks, hardlinks (as tar links),
// devices, fifos and extended attributes other than system.* (ACLs), e.g.
// security.capability. Sockets are skipped. Entries are in lexical order, so
// the same tree gives the same layer. The tree is walked again each time the
// layer is read.
func LayerFromDir(ctx context.Context, dir string) (v1.Layer, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("layer from %s: not a directory", dir)
	}
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeDirTar(ctx, dir, pw)) }()
		return pr, nil
	}
	l, err := tarball.LayerFromOpener(opener, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, err)
	}
	return l, nil
}

// ImageFromDir returns a single-layer linux image of the tree at dir with
// cfg as its runtime config; the platform is Options.Platform's default,
// linux/amd64, unless platform is given.
func ImageFromDir(ctx context.Context, dir string, cfg Config, platform *v1.Platform) (v1.Image, error) {
	l, err := LayerFromDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, fmt.Errorf("image from %s: %w", dir, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image from %s: %w", dir, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if platform != nil {
		cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	}
	cf.Config.Env = cfg.Env
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.WorkingDir = cfg.WorkingDir
	cf.Config.User = cfg.User
	cf.Config.StopSignal = cfg.StopSignal
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image from %s: %w", dir, err)
	}
	return img, nil
}
