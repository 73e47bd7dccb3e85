package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
)

func testManifest() Manifest {
	return Manifest{Schema: 1, Format: "raw", FSType: "ext4",
		Image:     Image{Reference: "busybox:latest", ManifestDigest: digestA},
		CreatedAt: time.Date(2026, 12, 3, 21, 0, 0, 500_000_000, time.UTC),
		Labels:    map[string]string{"team": "ml", "env": "<dev>"},
		Upper: Upper{File: "upper.ext4", SizeBytes: 1 << 30,
			Integrity: Integrity{Algorithm: DigestAlgorithm, Digest: digestB}},
		SourceSandbox: "dev"}
}

func TestCanonical(t *testing.T) {
	m := testManifest()
	got, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"created_at":"2026-12-03T21:00:00.5Z","format":"raw","fstype":"ext4",` +
		`"image":{"manifest_digest":"` + digestA + `","reference":"busybox:latest"},` +
		`"labels":{"env":"<dev>","team":"ml"},"parent":null,"schema":1,"source_sandbox":"dev",` +
		`"upper":{"file":"upper.ext4","integrity":{"algorithm":"msb-sparse-sha256-v1","digest":"` + digestB + `"},` +
		`"size_bytes":1073741824}}`
	if string(got) != want {
		t.Errorf("Canonical() =\n%s\nwant\n%s", got, want)
	}
	id, err := m.ID()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(want))
	if wantID := "sha256:" + hex.EncodeToString(sum[:]); id != wantID {
		t.Errorf("ID() = %s; want %s", id, wantID)
	}

	// The same manifest written with other key order and whitespace parses
	// to the same id; a changed field changes it.
	loose := "{\n  \"schema\": 1, \"format\": \"raw\", \"fstype\": \"ext4\", \"parent\": null,\n" +
		"  \"image\": {\"reference\": \"busybox:latest\", \"manifest_digest\": \"" + digestA + "\"},\n" +
		"  \"created_at\": \"2026-12-03T21:00:00.500000000Z\", \"labels\": {\"team\": \"ml\", \"env\": \"<dev>\"},\n" +
		"  \"upper\": {\"size_bytes\": 1073741824, \"file\": \"upper.ext4\", \"integrity\": {\"digest\": \"" + digestB +
		"\", \"algorithm\": \"msb-sparse-sha256-v1\"}}, \"source_sandbox\": \"dev\"\n}\n"
	pm, err := ParseManifest([]byte(loose))
	if err != nil {
		t.Fatal(err)
	}
	if pid, _ := pm.ID(); pid != id {
		t.Errorf("ID of reformatted manifest = %s; want %s", pid, id)
	}
	if diff := cmp.Diff(m, pm); diff != "" {
		t.Errorf("ParseManifest (-want +got):\n%s", diff)
	}
	m2 := m
	m2.Parent = digestA
	if id2, _ := m2.ID(); id2 == id {
		t.Errorf("ID unchanged by a parent")
	}
	m3 := m
	m3.Labels = nil
	c3, _ := m3.Canonical()
	if !bytes.Contains(c3, []byte(`"labels":{}`)) {
		t.Errorf("nil labels: %s; want \"labels\":{}", c3)
	}
}

func TestParseManifestRejects(t *testing.T) {
	good, err := testManifest().Canonical()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(string) string
	}{
		{"schema", func(s string) string { return strings.Replace(s, `"schema":1`, `"schema":2`, 1) }},
		{"format", func(s string) string { return strings.Replace(s, `"format":"raw"`, `"format":"qcow2"`, 1) }},
		{"fstype", func(s string) string { return strings.Replace(s, `"fstype":"ext4"`, `"fstype":"xfs"`, 1) }},
		{"upper file escapes", func(s string) string { return strings.Replace(s, `"file":"upper.ext4"`, `"file":"../x"`, 1) }},
		{"negative size", func(s string) string { return strings.Replace(s, `1073741824`, `-1`, 1) }},
		{"huge size", func(s string) string { return strings.Replace(s, `1073741824`, `9223372036854775807`, 1) }},
		{"algorithm", func(s string) string { return strings.Replace(s, `msb-sparse-sha256-v1`, `sha1`, 1) }},
		{"digest", func(s string) string { return strings.Replace(s, digestB, "sha256:xyz", 1) }},
		{"empty parent", func(s string) string { return strings.Replace(s, `"parent":null`, `"parent":""`, 1) }},
		{"unknown field", func(s string) string { return strings.Replace(s, `"schema":1`, `"schema":1,"x":1`, 1) }},
		{"trailing data", func(s string) string { return s + `{}` }},
		{"control in label", func(s string) string { return strings.Replace(s, `"ml"`, `"\u001b[2J"`, 1) }},
		{"bad time", func(s string) string { return strings.Replace(s, `2026-12-03T21:00:00.5Z`, `yesterday`, 1) }},
		{"oversized", func(s string) string { return s + strings.Repeat(" ", maxManifestBytes) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseManifest([]byte(tt.edit(string(good)))); !errors.Is(err, ErrBadManifest) {
				t.Errorf("ParseManifest = %v; want ErrBadManifest", err)
			}
		})
	}
	if _, err := ParseManifest(good); err != nil {
		t.Errorf("ParseManifest(canonical) = %v", err)
	}
}

// sparseFile writes a file of size with data at the given offsets (the
// rest holes) and returns its path.
func sparseFile(t *testing.T, dir string, size int64, data map[int64][]byte) string {
	t.Helper()
	p := filepath.Join(dir, "sparse.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func blocks(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// testData is 1 MiB of pattern at 0, a partial block at 5 MiB + 100 and a
// block of zeros written (allocated) at 10 MiB, in a 16 MiB file.
func testData() (int64, map[int64][]byte) {
	pat := bytes.Repeat([]byte("msb-snapshot!"), (1<<20)/13+1)[:1<<20]
	return 16 << 20, map[int64][]byte{0: pat, 5<<20 + 100: []byte("hello"), 10 << 20: make([]byte, 8192)}
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	size, data := testData()
	src := sparseFile(t, dir, size, data)
	dst := filepath.Join(dir, "copy.img")
	if err := CopySparse(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatalf("copy differs from source")
	}
	// Holes kept: the copy allocates no more than the source (plus slack
	// for file-system rounding), far below its 16 MiB.
	if got, limit := blocks(t, dst), blocks(t, src)+1<<20; got > limit {
		t.Errorf("copy allocates %d bytes; want at most %d (source %d)", got, limit, blocks(t, src))
	}
	if err := CopySparse(t.Context(), filepath.Join(dir, "missing"), dst+"2"); err == nil {
		t.Errorf("CopySparse(missing) = nil; want error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := CopySparse(ctx, src, dst+"3"); err == nil {
		// A clone succeeds before any context check; that is fine.
		if _, err := os.Stat(dst + ".tmp"); err == nil {
			t.Errorf("temporary file left behind")
		}
	}
}

func TestDigest(t *testing.T) {
	dir := t.TempDir()
	size, data := testData()
	sparse := sparseFile(t, dir, size, data)
	want, err := Digest(t.Context(), sparse)
	if err != nil {
		t.Fatal(err)
	}
	// A dense file of the same bytes (every zero written) hashes the same.
	all, _ := os.ReadFile(sparse)
	dense := filepath.Join(dir, "dense.img")
	if err := os.WriteFile(dense, all, 0o600); err != nil {
		t.Fatal(err)
	}
	if blocks(t, dense) < size/2 {
		t.Fatalf("dense file is sparse (%d bytes allocated); the test needs it dense", blocks(t, dense))
	}
	if got, err := Digest(t.Context(), dense); err != nil || got != want {
		t.Errorf("Digest(dense) = %s, %v; want %s", got, err, want)
	}
	flip := func(name string, off int64) string {
		b := bytes.Clone(all)
		b[off] ^= 1
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name string
		path string
	}{
		{"byte in data", flip("data", 4097)},
		{"byte in a hole", flip("hole", 12<<20)},
		{"last byte", flip("last", size-1)},
		{"longer", func() string {
			p := filepath.Join(dir, "longer")
			if err := os.WriteFile(p, append(bytes.Clone(all), 0), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}()},
	} {
		if got, err := Digest(t.Context(), tt.path); err != nil || got == want {
			t.Errorf("%s: Digest = %s, %v; want a digest other than %s", tt.name, got, err, want)
		}
	}
	// The definition, computed directly for a small file.
	small := filepath.Join(dir, "small")
	content := append(make([]byte, BlockSize), []byte("xy")...)
	if err := os.WriteFile(small, content, 0o600); err != nil {
		t.Fatal(err)
	}
	var pre bytes.Buffer
	pre.WriteString("msb-sparse-sha256-v1\n")
	pre.Write([]byte{0, 0, 0, 0, 0, 0, 0x10, 0x02})
	pre.Write([]byte{0, 0, 0, 0, 0, 0, 0x10, 0x00})
	pre.Write([]byte{0, 0, 0, 0, 0, 0, 0x10, 0x00})
	pre.WriteString("xy")
	sum := sha256.Sum256(pre.Bytes())
	if got, _ := Digest(t.Context(), small); got != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("Digest(small) = %s; want sha256:%x", got, sum)
	}
}

// snapshotDir builds a snapshot directory from a sparse test file.
func snapshotDir(t *testing.T) (string, Manifest) {
	t.Helper()
	dir := t.TempDir()
	size, data := testData()
	p := sparseFile(t, dir, size, data)
	if err := os.Rename(p, filepath.Join(dir, UpperFile)); err != nil {
		t.Fatal(err)
	}
	d, err := Digest(t.Context(), filepath.Join(dir, UpperFile))
	if err != nil {
		t.Fatal(err)
	}
	m := testManifest()
	m.Upper.SizeBytes, m.Upper.Integrity.Digest = size, d
	raw, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func TestArchiveRoundTrip(t *testing.T) {
	src, m := snapshotDir(t)
	want, _ := os.ReadFile(filepath.Join(src, UpperFile))
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "zstd", true: "plain"}[plain], func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteArchive(t.Context(), src, &buf, plain); err != nil {
				t.Fatal(err)
			}
			// 1 MiB of data and a 5-byte block: the archive carries no
			// zeros (the plain tar holds the data, its blocks and headers).
			if plain && buf.Len() > 1<<20+64<<10 {
				t.Errorf("plain archive is %d bytes; want about 1 MiB", buf.Len())
			}
			if !plain && !bytes.HasPrefix(buf.Bytes(), zstdMagic) {
				t.Errorf("archive is not zstd")
			}
			out := filepath.Join(t.TempDir(), UpperFile)
			var checked Manifest
			got, err := ReadArchive(t.Context(), &buf, out, func(m Manifest) error { checked = m; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m, got); diff != "" {
				t.Errorf("manifest (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(m, checked); diff != "" {
				t.Errorf("check saw (-want +got):\n%s", diff)
			}
			b, _ := os.ReadFile(out)
			if !bytes.Equal(b, want) {
				t.Errorf("imported upper differs")
			}
			// Holes kept on extraction, including the allocated zero block
			// of the source.
			if got := blocks(t, out); got > 2<<20 {
				t.Errorf("imported upper allocates %d bytes; want about 1 MiB", got)
			}
		})
	}
	// A corrupt source is not exported.
	f, err := os.OpenFile(filepath.Join(src, UpperFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'!'}, 7)
	f.Close()
	if err := WriteArchive(t.Context(), src, &bytes.Buffer{}, true); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("WriteArchive(corrupt) = %v; want ErrDigestMismatch", err)
	}
}

type entry struct {
	name string
	typ  byte
	body []byte
	size int64 // header size when body is nil
	link string
}

// buildTar writes entries as a plain tar; a nil body with size > 0 writes a
// header only (the archive is then truncated).
func buildTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.body))
		if e.body == nil {
			size = e.size
		}
		if typ != tar.TypeReg {
			size = 0
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Size: size, Mode: 0o600, Linkname: e.link}); err != nil {
			t.Fatal(err)
		}
		if e.body == nil && size > 0 {
			break // header only: the archive ends here, truncated
		}
		if e.body != nil && typ == tar.TypeReg {
			tw.Write(e.body)
		}
	}
	tw.Flush()
	return buf.Bytes()
}

// validEntries returns the three entries of a small valid archive (8 KiB
// upper, one data block) and its manifest.
func validEntries(t testing.TB) ([]entry, Manifest) {
	t.Helper()
	data := bytes.Repeat([]byte{7}, BlockSize)
	size := int64(2 * BlockSize)
	d := newDigester(size)
	d.block(BlockSize, data)
	m := testManifest()
	m.Upper.SizeBytes, m.Upper.Integrity.Digest = size, d.sum()
	raw, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return []entry{
		{name: entryManifest, body: raw},
		{name: entryExtents, body: encodeExtents(size, []extent{{BlockSize, BlockSize}})},
		{name: entryData, body: data},
	}, m
}

func TestReadArchiveHostile(t *testing.T) {
	good, m := validEntries(t)
	with := func(i int, e entry) []entry {
		out := append([]entry{}, good...)
		out[i] = e
		return out
	}
	wrongDigest := m
	wrongDigest.Upper.Integrity.Digest = digestA
	wrongRaw, _ := wrongDigest.Canonical()
	data := good[2].body
	tests := []struct {
		name    string
		archive []byte
		want    error
	}{
		{"dotdot name", buildTar(t, with(0, entry{name: "../manifest.json", body: good[0].body})), ErrBadArchive},
		{"absolute name", buildTar(t, with(0, entry{name: "/manifest.json", body: good[0].body})), ErrBadArchive},
		{"nested name", buildTar(t, with(2, entry{name: "x/../upper.ext4.data", body: data})), ErrBadArchive},
		{"symlink manifest", buildTar(t, with(0, entry{name: entryManifest, typ: tar.TypeSymlink, link: "/etc/passwd"})), ErrBadArchive},
		{"hardlink data", buildTar(t, with(2, entry{name: entryData, typ: tar.TypeLink, link: "/etc/shadow"})), ErrBadArchive},
		{"directory", buildTar(t, with(1, entry{name: entryExtents, typ: tar.TypeDir})), ErrBadArchive},
		{"oversized manifest", buildTar(t, with(0, entry{name: entryManifest, size: 1 << 40})), ErrBadArchive},
		{"oversized extents", buildTar(t, with(1, entry{name: entryExtents, size: 1 << 30})), ErrBadArchive},
		{"data larger than extents", buildTar(t, with(2, entry{name: entryData, body: append(bytes.Clone(data), 1)})), ErrBadArchive},
		{"data shorter than extents", buildTar(t, with(2, entry{name: entryData, body: data[:100]})), ErrBadArchive},
		{"truncated data", buildTar(t, with(2, entry{name: entryData, size: BlockSize})), ErrBadArchive},
		{"extra entry", buildTar(t, append(append([]entry{}, good...), entry{name: "evil", body: []byte("x")})), ErrBadArchive},
		{"missing data", buildTar(t, good[:2]), ErrBadArchive},
		{"empty", nil, ErrBadArchive},
		{"wrong order", buildTar(t, []entry{good[1], good[0], good[2]}), ErrBadArchive},
		{"extent beyond size", buildTar(t, with(1, entry{name: entryExtents, body: encodeExtents(2*BlockSize, []extent{{2 * BlockSize, BlockSize}})})), ErrBadArchive},
		{"extent overflow", buildTar(t, with(1, entry{name: entryExtents, body: encodeExtents(2*BlockSize, []extent{{BlockSize, -BlockSize}})})), ErrBadArchive},
		{"overlapping extents", buildTar(t, with(1, entry{name: entryExtents, body: encodeExtents(2*BlockSize, []extent{{0, BlockSize}, {0, BlockSize}})})), ErrBadArchive},
		{"unaligned extent", buildTar(t, with(1, entry{name: entryExtents, body: encodeExtents(2*BlockSize, []extent{{1, BlockSize}})})), ErrBadArchive},
		{"extents size mismatch", buildTar(t, with(1, entry{name: entryExtents, body: encodeExtents(3*BlockSize, []extent{{BlockSize, BlockSize}})})), ErrBadArchive},
		{"bad manifest", buildTar(t, with(0, entry{name: entryManifest, body: []byte(`{"schema":1}`)})), ErrBadManifest},
		{"wrong digest", buildTar(t, with(0, entry{name: entryManifest, body: wrongRaw})), ErrDigestMismatch},
		{"flipped data byte", buildTar(t, with(2, entry{name: entryData, body: append([]byte{8}, data[1:]...)})), ErrDigestMismatch},
	}
	zgood := zstdBytes(t, buildTar(t, good))
	tests = append(tests, struct {
		name    string
		archive []byte
		want    error
	}{"truncated zstd", zgood[:len(zgood)/2], ErrBadArchive})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), UpperFile)
			_, err := ReadArchive(t.Context(), bytes.NewReader(tt.archive), out, nil)
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadArchive = %v; want %v", err, tt.want)
			}
		})
	}
	// The valid archive, plain and compressed, passes; check can refuse it
	// before any data is written.
	for _, a := range [][]byte{buildTar(t, good), zgood} {
		if _, err := ReadArchive(t.Context(), bytes.NewReader(a), filepath.Join(t.TempDir(), UpperFile), nil); err != nil {
			t.Errorf("ReadArchive(valid) = %v", err)
		}
	}
	refuse := errors.New("image not cached")
	out := filepath.Join(t.TempDir(), UpperFile)
	if _, err := ReadArchive(t.Context(), bytes.NewReader(zgood), out, func(Manifest) error { return refuse }); !errors.Is(err, refuse) {
		t.Errorf("ReadArchive with refusing check = %v; want %v", err, refuse)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("refused import wrote %s", out)
	}
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func FuzzReadArchive(f *testing.F) {
	good, _ := validEntries(f)
	f.Add(buildTar(f, good))
	f.Add(zstdBytes(f, buildTar(f, good)))
	f.Add(buildTar(f, good[:2]))
	f.Add(buildTar(f, []entry{{name: "../x", body: []byte("x")}}))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		out := filepath.Join(dir, UpperFile)
		m, err := ReadArchive(context.Background(), bytes.NewReader(b), out, nil)
		if err != nil {
			return
		}
		// Anything accepted has a valid manifest and an upper that hashes
		// to its digest.
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted invalid manifest: %v", err)
		}
		if d, err := Digest(context.Background(), out); err != nil || d != m.Upper.Integrity.Digest {
			t.Fatalf("accepted upper hashes to %s, %v; manifest says %s", d, err, m.Upper.Integrity.Digest)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	raw, _ := testManifest().Canonical()
	f.Add(raw)
	f.Add([]byte(`{"schema":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		c, err := m.Canonical()
		if err != nil {
			t.Fatalf("parsed manifest has no canonical form: %v", err)
		}
		m2, err := ParseManifest(c)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v", err)
		}
		if id1, _ := m.ID(); func() string { id2, _ := m2.ID(); return id2 }() != id1 {
			t.Fatalf("id changes through the canonical form")
		}
	})
}
