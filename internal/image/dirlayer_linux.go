package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"
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

type inodeKey struct{ dev, ino uint64 }

func writeDirTar(ctx context.Context, dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[inodeKey]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		var target string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		hdr.Uname, hdr.Gname = "", ""
		// Reading a file moves its atime, and PAX headers (used for
		// xattrs) would record it: the second read of the layer would
		// then not match the digest of the first.
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name = strings.TrimSuffix(hdr.Name, "/") + "/"
			if rel == "." {
				hdr.Name = "./"
			}
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inodeKey{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = hdr.Name
			}
		}
		if err := addXattrs(path, hdr); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		// CopyN: a file that grows while we read it must not overrun its
		// header's size.
		_, err = io.CopyN(tw, f, hdr.Size)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return tw.Close()
}

// addXattrs records path's extended attributes as SCHILY.xattr PAX records,
// the form rootfs.BuildFromLayers reads.
func addXattrs(path string, hdr *tar.Header) error {
	names, err := listXattrs(path)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n, "system.") {
			continue
		}
		v, err := getXattr(path, n)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return fmt.Errorf("xattr %s of %s: %w", n, path, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+n] = string(v)
		hdr.Format = tar.FormatPAX
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	var out []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
