package image

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/erofs/go-erofs"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// readEROFS returns the content of name inside the EROFS image at path.
func readEROFS(t *testing.T, path, name string) (string, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, err := erofs.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(e, name)
	return string(b), err
}

func layerDigests(t *testing.T, img v1.Image) (blobs, diffIDs []string) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, _ := l.Digest()
		id, _ := l.DiffID()
		blobs = append(blobs, d.String())
		diffIDs = append(diffIDs, id.String())
	}
	return blobs, diffIDs
}

func TestPull(t *testing.T) {
	reg := newTestRegistry(t, false)
	src := testImage(t)
	ref := reg.Host + "/team/app:1.0"
	push(t, ref, src)
	s := newStore(t, Options{})

	var events []Event
	img, err := s.Pull(t.Context(), ref, PullIfMissing, func(e Event) { events = append(events, e) })
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	md, _ := src.Digest()
	blobs, diffIDs := layerDigests(t, src)
	want := &Image{
		Ref:            ref,
		ManifestDigest: md.String(),
		Config: Config{Env: []string{"PATH=/bin", "A=1"}, Entrypoint: []string{"/bin/hello"}, Cmd: []string{"x"},
			WorkingDir: "/work", User: "1000:1000", StopSignal: "SIGINT"},
		LayerDiffIDs: diffIDs,
		Layers:       blobs,
		Platform:     "linux/amd64",
	}
	if diff := cmp.Diff(want, img, cmpIgnoreSize); diff != "" {
		t.Errorf("Pull image mismatch (-want +got):\n%s", diff)
	}
	kinds := map[string]int{}
	for _, e := range events {
		kinds[e.Kind]++
	}
	for k, n := range map[string]int{EventResolving: 1, EventResolved: 1, EventLayerDownloadStart: 2,
		EventLayerDownloadDone: 2, EventLayerMaterialize: 2, EventComplete: 1} {
		if kinds[k] != n {
			t.Errorf("%s events = %d; want %d (all: %v)", k, kinds[k], n, events)
		}
	}
	if events[0].Kind != EventResolving || events[len(events)-1].Kind != EventComplete {
		t.Errorf("events = %v; want Resolving first and Complete last", events)
	}

	path, err := s.Rootfs(t.Context(), img)
	if err != nil {
		t.Fatalf("Rootfs: %v", err)
	}
	fsckEROFS(t, path)
	for name, want := range map[string]string{"etc/os": "two", "bin/hello": "#!/bin/sh\necho hi\n"} {
		got, err := readEROFS(t, path, name)
		if err != nil || got != want {
			t.Errorf("rootfs %s = %q, %v; want %q", name, got, err, want)
		}
	}
	again, err := s.Rootfs(t.Context(), img)
	if err != nil || again != path {
		t.Errorf("second Rootfs = %q, %v; want cached %q", again, err, path)
	}

	got, err := s.Inspect(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(img, got); diff != "" {
		t.Errorf("Inspect mismatch (-pull +inspect):\n%s", diff)
	}
}

var cmpIgnoreSize = cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "SizeBytes" }, cmp.Ignore())

func TestPullPolicies(t *testing.T) {
	reg := newTestRegistry(t, false)
	ref := reg.Host + "/p/img:v"
	push(t, ref, randomImage(t, 1024, 2))
	reg.reset()
	s := newStore(t, Options{})
	ctx := t.Context()

	if _, err := s.Pull(ctx, ref, PullNever, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pull(never, uncached) = %v; want ErrNotFound", err)
	}
	if n := reg.count(); n != 0 {
		t.Errorf("Pull(never) made %d requests; want 0", n)
	}
	first, err := s.Pull(ctx, ref, "", nil)
	if err != nil {
		t.Fatal(err)
	}

	reg.reset()
	for _, p := range []PullPolicy{PullIfMissing, "", PullNever} {
		img, err := s.Pull(ctx, ref, p, nil)
		if err != nil {
			t.Fatalf("Pull(%q, cached) = %v", p, err)
		}
		if img.ManifestDigest != first.ManifestDigest {
			t.Errorf("Pull(%q) digest = %s; want %s", p, img.ManifestDigest, first.ManifestDigest)
		}
	}
	if n := reg.count(); n != 0 {
		t.Errorf("cached pulls made %d requests; want 0", n)
	}

	img, err := s.Pull(ctx, ref, PullAlways, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.count("/manifests/"); n == 0 {
		t.Errorf("Pull(always) made no manifest request; want the tag re-checked")
	}
	if n := reg.count("GET", "/blobs/"); n != 0 {
		t.Errorf("Pull(always) fetched %d blobs; want 0 (all cached)", n)
	}
	if img.ManifestDigest != first.ManifestDigest {
		t.Errorf("Pull(always) digest = %s; want %s", img.ManifestDigest, first.ManifestDigest)
	}

	// The tag moves: always follows it, if-missing keeps the cached one.
	push(t, ref, randomImage(t, 512, 1))
	moved, err := s.Pull(ctx, ref, PullAlways, nil)
	if err != nil {
		t.Fatal(err)
	}
	if moved.ManifestDigest == first.ManifestDigest {
		t.Errorf("Pull(always) after re-push kept %s; want the new manifest", first.ManifestDigest)
	}

	// Offline: the registry is gone, cached pulls still work.
	reg.srv.Close()
	if _, err := s.Pull(ctx, ref, PullIfMissing, nil); err != nil {
		t.Errorf("Pull(if-missing) with registry down = %v; want cached image", err)
	}
	if _, err := s.Pull(ctx, reg.Host+"/p/other:v", PullIfMissing, nil); err == nil {
		t.Errorf("Pull(uncached) with registry down = nil; want error")
	}
	if _, err := s.Pull(ctx, ref, "sometimes", nil); err == nil {
		t.Errorf("Pull(bad policy) = nil; want error")
	}
}

func TestPullCorruptBlob(t *testing.T) {
	reg := newTestRegistry(t, false)
	src := randomImage(t, 4096, 2)
	ref := reg.Host + "/c/img:v"
	push(t, ref, src)
	blobs, _ := layerDigests(t, src)
	victim := blobs[1]

	// The registry serves a corrupted body for the victim's first GET.
	var mu sync.Mutex
	served := 0
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || filepath.Base(r.URL.Path) != victim {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		served++
		if served > 1 {
			return false
		}
		rec := &captureWriter{header: http.Header{}}
		registryServe(reg, rec, r)
		body := rec.body.Bytes()
		body[len(body)/2] ^= 0xff
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		w.Write(body)
		return true
	})
	s := newStore(t, Options{})
	img, err := s.Pull(t.Context(), ref, "", nil)
	if err != nil {
		t.Fatalf("Pull with one corrupted response: %v", err)
	}
	if served != 2 {
		t.Errorf("victim blob served %d times; want 2 (corrupt, then good)", served)
	}
	if err := s.verifyBlob(victim); err != nil {
		t.Errorf("stored blob: %v", err)
	}

	// Corrupt the stored copy: Rootfs must not use it, and fetches it again.
	p, _ := s.blobPath(victim)
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg.reset()
	path, err := s.Rootfs(t.Context(), img)
	if err != nil {
		t.Fatalf("Rootfs with a corrupted cached blob: %v", err)
	}
	fsckEROFS(t, path)
	if n := reg.count("GET", victim); n != 1 {
		t.Errorf("Rootfs re-fetched the victim %d times; want 1", n)
	}

	// Every response corrupted (right length, wrong bytes): the pull
	// fails and nothing is kept.
	size := func() int64 {
		ls, _ := src.Layers()
		n, _ := ls[1].Size()
		return n
	}()
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && filepath.Base(r.URL.Path) == victim {
			w.Write(bytes.Repeat([]byte{'x'}, int(size)))
			return true
		}
		return false
	})
	s2 := newStore(t, Options{})
	if _, err := s2.Pull(t.Context(), ref, "", nil); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Pull with an always-corrupt blob = %v; want ErrDigestMismatch", err)
	}
	if s2.hasBlob(victim) {
		t.Errorf("corrupt blob was stored")
	}
}

func TestPullConcurrentSharesDownloads(t *testing.T) {
	reg := newTestRegistry(t, false)
	src := randomImage(t, 256<<10, 3)
	ref := reg.Host + "/con/img:v"
	push(t, ref, src)
	reg.reset()
	s := newStore(t, Options{})
	// A second Store over the same home stands in for a second process.
	s2 := openAt(t, s.home, Options{})

	const pullers = 6
	var wg sync.WaitGroup
	errs := make([]error, pullers)
	digests := make([]string, pullers)
	for i := range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			img, err := st.Pull(t.Context(), ref, "", nil)
			errs[i] = err
			if err == nil {
				digests[i] = img.ManifestDigest
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("puller %d: %v", i, err)
		}
	}
	blobs, _ := layerDigests(t, src)
	for _, b := range blobs {
		if n := reg.count("GET", b); n != 1 {
			t.Errorf("blob %s fetched %d times by %d concurrent pulls; want 1", b[:19], n, pullers)
		}
	}
	// Many callers of Rootfs build it once and agree on the path.
	paths := make([]string, pullers)
	for i := range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = s.Rootfs(t.Context(), &Image{ManifestDigest: digests[i]})
		}()
	}
	wg.Wait()
	for i := range pullers {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Errorf("Rootfs %d = %q, %v; want %q", i, paths[i], errs[i], paths[0])
		}
	}
	fsckEROFS(t, paths[0])
}

func TestPullResumesPartialBlob(t *testing.T) {
	reg := newTestRegistry(t, false)
	src := randomImage(t, 512<<10, 1)
	ref := reg.Host + "/res/img:v"
	push(t, ref, src)
	ls, _ := src.Layers()
	rc, _ := ls[0].Compressed()
	data := make([]byte, 0)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		data = append(data, buf[:n]...)
		if err != nil {
			break
		}
	}
	rc.Close()
	d, _ := ls[0].Digest()

	tests := []struct {
		name      string
		part      []byte
		wantRange string
	}{
		{"half", data[:len(data)/2], fmt.Sprintf("bytes=%d-%d", len(data)/2, len(data)-1)},
		// A .part whose prefix is wrong: the resumed whole does not
		// verify, so it is thrown away and fetched again without Range.
		{"bad prefix", append([]byte("XXXX"), data[4:len(data)/2]...), fmt.Sprintf("bytes=%d-%d", len(data)/2, len(data)-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, Options{})
			if err := os.MkdirAll(s.home.TmpDir(), 0o700); err != nil {
				t.Fatal(err)
			}
			part := filepath.Join(s.home.TmpDir(), "sha256-"+d.Hex+".part")
			if err := os.WriteFile(part, tt.part, 0o600); err != nil {
				t.Fatal(err)
			}
			reg.reset()
			if _, err := s.Pull(t.Context(), ref, "", nil); err != nil {
				t.Fatalf("Pull: %v", err)
			}
			reg.mu.Lock()
			ranges := append([]string(nil), reg.ranges...)
			reg.mu.Unlock()
			if len(ranges) == 0 || ranges[0] != tt.wantRange {
				t.Errorf("Range headers = %q; want first %q", ranges, tt.wantRange)
			}
			if err := s.verifyBlob(d.String()); err != nil {
				t.Errorf("stored blob: %v", err)
			}
			if _, err := os.Stat(part); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf(".part still there after the blob was stored: %v", err)
			}
		})
	}
}

// TestPullResumesAfterDroppedConnection: the registry drops the connection
// halfway through a blob; the same pull continues it with a Range request
// instead of starting over.
func TestPullResumesAfterDroppedConnection(t *testing.T) {
	reg := newTestRegistry(t, false)
	src := randomImage(t, 1<<20, 1)
	ref := reg.Host + "/drop/img:v"
	push(t, ref, src)
	blobs, _ := layerDigests(t, src)
	var once sync.Once
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || filepath.Base(r.URL.Path) != blobs[0] {
			return false
		}
		dropped := false
		once.Do(func() {
			dropped = true
			rec := &captureWriter{header: http.Header{}}
			registryServe(reg, rec, r)
			body := rec.body.Bytes()
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
		})
		if dropped {
			panic(http.ErrAbortHandler) // net/http closes the connection
		}
		return false
	})
	s := newStore(t, Options{})
	reg.reset()
	if _, err := s.Pull(t.Context(), ref, "", nil); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if n := reg.count("GET", blobs[0]); n != 2 {
		t.Errorf("blob GETs = %d; want 2 (dropped, then resumed)", n)
	}
	reg.mu.Lock()
	ranges := append([]string(nil), reg.ranges...)
	reg.mu.Unlock()
	if len(ranges) != 1 || !strings.HasPrefix(ranges[0], "bytes=") || strings.HasPrefix(ranges[0], "bytes=0-") {
		t.Errorf("Range headers = %q; want one resuming from the middle", ranges)
	}
	if err := s.verifyBlob(blobs[0]); err != nil {
		t.Errorf("stored blob: %v", err)
	}
}
