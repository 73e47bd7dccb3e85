package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/msb-go/msb/internal/home"
	"github.com/msb-go/msb/internal/image"
	"github.com/msb-go/msb/internal/rootfs"
	"github.com/msb-go/msb/internal/snapshot"
	"github.com/msb-go/msb/internal/store"
)

// provisioner turns a sandbox's root (an OCI image or a host directory) into
// the disk images its VM boots from: a read-only EROFS lower shared between
// sandboxes (from the image store, or packed from the directory and cached
// by the tree's metadata) and the sandbox's own sparse ext4 upper. It never
// starts a process.
type provisioner struct {
	home  home.Home
	store *store.Store
}

// images opens the image store over the home and database, with registry
// settings from the environment.
func (p provisioner) images() (*image.Store, error) {
	opts, err := image.EnvOptions()
	if err != nil {
		return nil, err
	}
	return image.Open(p.home, p.store, opts), nil
}

// resolveImage pulls cfg.Image (by policy) and merges the image's
// configuration under the user's: image env first (user values win), the
// image's workdir and user unless given, and its entrypoint+cmd as the
// default command.
func (p provisioner) resolveImage(ctx context.Context, cfg *Config, opts CreateOptions) error {
	imgs, err := p.images()
	if err != nil {
		return err
	}
	img, err := imgs.Pull(ctx, cfg.Image, opts.PullPolicy, opts.Progress)
	if err != nil {
		return fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	cfg.ImageDigest = img.ManifestDigest
	mergeImageConfig(cfg, img)
	return nil
}

// mergeImageConfig puts the image's configuration under the user's.
func mergeImageConfig(cfg *Config, img *image.Image) {
	cfg.Env = append(append([]string{}, img.Config.Env...), cfg.Env...)
	if cfg.Workdir == "" {
		cfg.Workdir = img.Config.WorkingDir
	}
	if cfg.User == "" {
		cfg.User = img.Config.User
	}
	cfg.Command = append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
	if len(cfg.Entrypoint) > 0 {
		// Docker: --entrypoint resets the image's CMD as well.
		cfg.Command = slices.Clone(cfg.Entrypoint)
	}
}

// createUpper makes a new sandbox's writable layer, writes patches into it
// and pins the image manifest the sandbox boots from, so `msb image rm` and
// prune leave it alone.
//
// A live root has no upper: the guest writes into its directory.
//
// A sandbox created from a snapshot starts from a copy of its upper.
func (p provisioner) createUpper(ctx context.Context, sb store.Sandbox, cfg Config, snap *snapshot.Info, patches []rootfs.Patch) error {
	if cfg.RootfsLive {
		return nil
	}
	if snap != nil {
		if err := p.copySnapshotUpper(ctx, *snap, p.home.UpperPath(sb.Name)); err != nil {
			return err
		}
	} else if err := p.freshUpper(ctx, p.home.UpperPath(sb.Name), cfg.UpperSizeBytes); err != nil {
		return fmt.Errorf("rootfs: upper: %w", err)
	}
	if len(patches) > 0 {
		if err := rootfs.ApplyPatches(ctx, p.home.UpperPath(sb.Name), patches); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if cfg.ImageDigest != "" {
		err := p.store.SetSandboxRootfs(ctx, store.Rootfs{SandboxID: sb.ID, ManifestDigest: cfg.ImageDigest,
			Mode: store.RootfsEROFS, UpperFSType: "ext4"})
		if err != nil {
			return fmt.Errorf("record image: %w", err)
		}
	}
	return nil
}

// freshUpper makes path a new, empty upper image of size bytes (0: the
// default). Formatting ext4 and syncing it took 350-460 ms of every create;
// the formatted image depends only on its size, so it is made once per size
// in the cache and each sandbox gets a sparse copy of it (its few MiB of
// metadata). The copies share the file system's UUID, as snapshot copies
// already do: each is a different guest's disk.
func (p provisioner) freshUpper(ctx context.Context, path string, size int64) error {
	if size == 0 {
		size = rootfs.DefaultUpperSize
	}
	dir := filepath.Join(p.home.CacheDir(), "upper")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmpl := filepath.Join(dir, fmt.Sprintf("%s-%d.ext4", rootfs.UpperLayout, size))
	if _, err := os.Stat(tmpl); err != nil {
		unlock, err := store.Lock(ctx, tmpl+".lock")
		if err != nil {
			return err
		}
		defer unlock()
		if _, err := os.Stat(tmpl); err != nil {
			if err := rootfs.CreateUpper(ctx, tmpl, size); err != nil {
				return err
			}
		}
	}
	return rootfs.CopyUpper(ctx, tmpl, path)
}

// roots returns the lower and upper images a sandbox boots from; both are
// empty when the initramfs or a live directory is the root.
func (p provisioner) roots(ctx context.Context, name string, cfg Config) (lower, upper string, err error) {
	switch {
	case cfg.RootfsLive:
		return "", "", nil
	case cfg.Rootfs != "":
		lower, err = p.packRootfs(ctx, cfg.Rootfs)
	case cfg.ImageDigest != "":
		lower, err = p.imageRootfs(ctx, cfg.ImageDigest)
	default:
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return lower, p.home.UpperPath(name), nil
}

// imageRootfs returns the EROFS image of a cached manifest (built on first
// use), never contacting a registry.
func (p provisioner) imageRootfs(ctx context.Context, digest string) (string, error) {
	imgs, err := p.images()
	if err != nil {
		return "", err
	}
	img, err := imgs.Inspect(ctx, digest)
	if err != nil {
		return "", fmt.Errorf("image not found: %s: %w (try `msb pull`)", digest, err)
	}
	path, err := imgs.Rootfs(ctx, img)
	if err != nil {
		return "", fmt.Errorf("rootfs: image %s: %w", digest, err)
	}
	return path, nil
}

// packRootfs packs dir into a cached EROFS image keyed by the tree's
// metadata, so an unchanged directory is packed once.
func (p provisioner) packRootfs(ctx context.Context, dir string) (string, error) {
	key, err := treeKey(dir)
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	cacheDir := filepath.Join(p.home.CacheDir(), "rootfs")
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	dst := filepath.Join(cacheDir, key+".erofs")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	unlock, err := store.Lock(ctx, dst+".lock")
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := rootfs.PackDir(ctx, dir, dst, rootfs.PackOptions{}); err != nil {
		return "", fmt.Errorf("rootfs: pack %s: %w", dir, err)
	}
	return dst, nil
}

// treeKey hashes the path, names, modes, owners, sizes and mtimes of a tree.
func treeKey(dir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "v1\x00%s\x00", dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var uid, gid uint32
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			uid, gid = st.Uid, st.Gid
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d\x00%d\x00%d\x00", p, info.Mode(), uid, gid, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}
