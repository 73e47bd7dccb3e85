package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// OCI image-spec annotations.md: the tag (or full reference) of an index
// entry; containerd writes the full name in its own key.
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

// Import adds an image from local files, without any network access:
//
//   - a `docker save` archive (a tar with manifest.json),
//   - an OCI image layout directory (with oci-layout and index.json),
//   - a plain directory, taken as the root file system of a one-layer image.
//
// ref names the result. It may be empty for an archive or layout that names
// exactly one image (RepoTags, or the ref.name annotation); when the archive
// holds several, ref picks the one to import. A plain directory needs ref.
// Every blob is verified against its digest as it is stored.
func (s *Store) Import(ctx context.Context, path string, ref string, progress func(Event)) (*Image, error) {
	emit := progressFunc(progress)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	var (
		img  v1.Image
		name string
	)
	switch {
	case fi.Mode().IsRegular():
		img, name, err = dockerArchive(path, ref)
	case fi.IsDir() && exists(filepath.Join(path, "oci-layout")):
		img, name, err = s.ociLayout(path, ref)
	case fi.IsDir():
		if ref == "" {
			return nil, fmt.Errorf("import %s: a plain directory needs a reference to name it", path)
		}
		img, err = ImageFromDir(ctx, path, Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}, s.opts.Platform)
		name = ref
	default:
		return nil, fmt.Errorf("import %s: not a file or directory: %w", path, ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if ref != "" {
		name = ref
	}
	if name == "" {
		return nil, fmt.Errorf("import %s: the archive names no image; give a reference", path)
	}
	r, err := ParseReference(name)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	emit(Event{Kind: EventResolving, Message: r.String()})
	out, err := s.importImage(ctx, r, img, emit)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	emit(Event{Kind: EventComplete, Message: out.Ref})
	return out, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (s *Store) importImage(ctx context.Context, r Reference, img v1.Image, emit func(Event)) (*Image, error) {
	mdigest, err := img.Digest()
	if err != nil {
		return nil, err
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
	fetch := func(d v1.Descriptor) fetchFunc {
		return func(context.Context, int64) (io.ReadCloser, int64, error) {
			if d.Digest == mf.Config.Digest {
				raw, err := img.RawConfigFile()
				if err != nil {
					return nil, 0, err
				}
				return io.NopCloser(bytes.NewReader(raw)), 0, nil
			}
			l, err := img.LayerByDigest(d.Digest)
			if err != nil {
				return nil, 0, err
			}
			rc, err := l.Compressed()
			return rc, 0, err
		}
	}
	return s.commit(ctx, r, mdigest.String(), string(mt), mf, fetch, emit)
}

// dockerArchive opens a `docker save` tar. With several images in it, ref
// (as written in RepoTags, or normalized) selects one.
func dockerArchive(path, ref string) (v1.Image, string, error) {
	opener := archiveOpener(path)
	if !tarHas(opener, "manifest.json") {
		return nil, "", fmt.Errorf("not a docker save archive (no manifest.json; extract an OCI layout tar and import the directory): %w", ErrUnsupported)
	}
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, "", fmt.Errorf("read manifest.json: %w", err)
	}
	var (
		pick *tarball.Descriptor
		tag  string
	)
	switch {
	case len(m) == 1 && ref == "":
		pick = &m[0]
		if len(m[0].RepoTags) > 0 {
			tag = m[0].RepoTags[0]
		}
	case ref != "":
		for i := range m {
			for _, t := range m[i].RepoTags {
				if sameRef(t, ref) {
					pick, tag = &m[i], t
				}
			}
		}
		if pick == nil && len(m) == 1 {
			pick = &m[0]
		}
	}
	if pick == nil {
		return nil, "", fmt.Errorf("archive holds %d images; name one of their tags: %w", len(m), ErrNotFound)
	}
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return nil, "", fmt.Errorf("tag %q in archive: %w", tag, err)
		}
		t = &nt
	} else if len(m) > 1 {
		return nil, "", fmt.Errorf("archive holds %d images: %w", len(m), ErrUnsupported)
	}
	img, err := tarball.Image(opener, t)
	if err != nil {
		return nil, "", err
	}
	return img, tag, nil
}

// sameRef reports whether two references name the same image once
// normalized.
func sameRef(a, b string) bool {
	ra, err1 := ParseReference(a)
	rb, err2 := ParseReference(b)
	return err1 == nil && err2 == nil && ra == rb
}

// archiveOpener opens the archive at path, through gzip when it is
// compressed (`docker save | gzip`). ggcr reads the archive once per file it
// needs, so each call starts again from the beginning.
func archiveOpener(path string) tarball.Opener {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		var magic [2]byte
		if _, err := io.ReadFull(f, magic[:]); err != nil || !bytes.Equal(magic[:], gzipMagic) {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		return gzipFile{zr, f}, nil
	}
}

type gzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g gzipFile) Close() error {
	g.Reader.Close()
	return g.f.Close()
}

// tarHas reports whether the tar opener gives has an entry called name.
func tarHas(opener tarball.Opener, name string) bool {
	rc, err := opener()
	if err != nil {
		return false
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return false
		}
		if strings.TrimPrefix(hdr.Name, "./") == name {
			return true
		}
	}
}

// ociLayout opens an OCI image layout. An index entry is chosen by ref (its
// ref.name annotation, full or tag only), else the only entry; a nested index
// resolves to s's platform.
func (s *Store) ociLayout(dir, ref string) (v1.Image, string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, "", err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	var pick *v1.Descriptor
	var picked string
	for i := range im.Manifests {
		d := &im.Manifests[i]
		for _, n := range []string{d.Annotations[annotationContainerName], d.Annotations[annotationRefName]} {
			if n == "" || ref == "" {
				continue
			}
			if sameRef(n, ref) || n == tagOf(ref) {
				pick, picked = d, n
			}
		}
	}
	if pick == nil {
		if len(im.Manifests) != 1 {
			return nil, "", fmt.Errorf("layout holds %d manifests; name one by its ref.name: %w", len(im.Manifests), ErrNotFound)
		}
		pick = &im.Manifests[0]
		picked = pick.Annotations[annotationContainerName]
		if r := pick.Annotations[annotationRefName]; picked == "" && r != "" {
			if _, err := ParseReference(r); err == nil && strings.ContainsAny(r, "/:") {
				picked = r
			}
		}
	}
	switch {
	case pick.MediaType.IsImage():
		img, err := idx.Image(pick.Digest)
		return img, picked, err
	case pick.MediaType.IsIndex():
		child, err := idx.ImageIndex(pick.Digest)
		if err != nil {
			return nil, "", err
		}
		img, err := imageForPlatform(child, s.platform())
		return img, picked, err
	}
	return nil, "", fmt.Errorf("layout entry of media type %s: %w", pick.MediaType, ErrUnsupported)
}

func tagOf(ref string) string {
	r, err := ParseReference(ref)
	if err != nil {
		return ""
	}
	return r.Tag
}

func imageForPlatform(idx v1.ImageIndex, want v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == want.OS && d.Platform.Architecture == want.Architecture &&
			(want.Variant == "" || d.Platform.Variant == want.Variant) && d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for %s: %w", platformString(want), ErrUnsupported)
}
