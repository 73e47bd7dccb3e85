package store

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func testImage(digest string, diffIDs ...string) Image {
	img := Image{
		Manifest: Manifest{Digest: digest, MediaType: "application/vnd.oci.image.manifest.v1+json",
			ConfigDigest: "sha256:cfg-" + digest, Architecture: "amd64", OS: "linux", TotalSizeBytes: 300},
		Config: ImageConfig{Digest: "sha256:cfg-" + digest, Env: []string{"PATH=/usr/bin"}, Cmd: []string{"python3"},
			WorkingDir: "/app", User: "1000", Labels: map[string]string{"org": "x"}, StopSignal: "SIGTERM"},
	}
	for _, d := range diffIDs {
		img.Layers = append(img.Layers, Layer{DiffID: d, BlobDigest: "sha256:blob-" + d,
			MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", CompressedSizeBytes: 100})
	}
	return img
}

// ignoreGenerated drops the fields the store assigns.
var ignoreGenerated = cmp.Options{
	cmpopts.IgnoreFields(Manifest{}, "ID", "CreatedAt", "LayerCount"),
	cmpopts.IgnoreFields(Layer{}, "ID", "CreatedAt", "LastUsedAt"),
	cmpopts.EquateEmpty(),
}

func TestImages(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	in := testImage("sha256:m1", "sha256:l1", "sha256:l2")
	got, err := s.PutImage(ctx, "python:3", in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, got, ignoreGenerated); diff != "" {
		t.Errorf("PutImage mismatch (-want +got):\n%s", diff)
	}
	if got.Manifest.LayerCount != 2 {
		t.Errorf("LayerCount = %d; want 2", got.Manifest.LayerCount)
	}
	byRef, err := s.ImageByRef(ctx, "python:3")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, byRef); diff != "" {
		t.Errorf("ImageByRef mismatch (-put +got):\n%s", diff)
	}
	if _, err := s.ImageByRef(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ImageByRef(nope) = %v; want ErrNotFound", err)
	}
	if _, err := s.ImageByDigest(ctx, "sha256:m1"); err != nil {
		t.Errorf("ImageByDigest = %v", err)
	}

	// A second image shares l2 and re-points a second ref; layers are
	// shared by diff_id.
	if _, err := s.PutImage(ctx, "python:latest", testImage("sha256:m2", "sha256:l2", "sha256:l3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutImage(ctx, "", testImage("sha256:m1", "sha256:l1", "sha256:l2")); err != nil {
		t.Fatalf("re-put known manifest: %v", err)
	}
	var layers int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM layer").Scan(&layers); err != nil {
		t.Fatal(err)
	}
	if layers != 3 {
		t.Errorf("layer rows = %d; want 3 (shared by diff_id)", layers)
	}
	refs, err := s.ImageRefs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refNames []string
	for _, r := range refs {
		refNames = append(refNames, r.Reference+"="+r.ManifestDigest)
	}
	if diff := cmp.Diff([]string{"python:3=sha256:m1", "python:latest=sha256:m2"}, refNames); diff != "" {
		t.Errorf("ImageRefs mismatch (-want +got):\n%s", diff)
	}
	// Re-pointing a ref.
	if _, err := s.PutImage(ctx, "python:3", testImage("sha256:m2", "sha256:l2", "sha256:l3")); err != nil {
		t.Fatal(err)
	}
	if img, err := s.ImageByRef(ctx, "python:3"); err != nil || img.Manifest.Digest != "sha256:m2" {
		t.Errorf("ImageByRef after re-point = %s, %v; want sha256:m2", img.Manifest.Digest, err)
	}

	// In use by a sandbox: cannot delete the manifest.
	sb := mustCreate(t, s, "user")
	if err := s.SetSandboxRootfs(ctx, Rootfs{SandboxID: sb.ID, ManifestDigest: "sha256:m2", Mode: RootfsEROFS, UpperFSType: "ext4"}); err != nil {
		t.Fatal(err)
	}
	inUse, err := s.ImageRefsInUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"python:3": {"user"}, "python:latest": {"user"}}, inUse); diff != "" {
		t.Errorf("ImageRefsInUse mismatch (-want +got):\n%s", diff)
	}
	if err := s.DeleteManifest(ctx, "sha256:m2"); !errors.Is(err, ErrInUse) {
		t.Errorf("DeleteManifest(in use) = %v; want ErrInUse", err)
	}
	unref, err := s.UnreferencedManifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unref) != 1 || unref[0].Digest != "sha256:m1" {
		t.Errorf("UnreferencedManifests = %+v; want [sha256:m1]", unref)
	}
	if err := s.DeleteLayer(ctx, "sha256:l1"); !errors.Is(err, ErrInUse) {
		t.Errorf("DeleteLayer(listed) = %v; want ErrInUse", err)
	}
	if err := s.DeleteManifest(ctx, "sha256:m1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteManifest(ctx, "sha256:m1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteManifest = %v; want ErrNotFound", err)
	}
	unused, err := s.UnusedLayers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(unused) != 1 || unused[0].DiffID != "sha256:l1" {
		t.Errorf("UnusedLayers = %+v; want [sha256:l1]", unused)
	}
	if err := s.SetLayerEROFSSize(ctx, "sha256:l1", 4096); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Layer(ctx, "sha256:l1"); err != nil || l.EROFSSizeBytes == nil || *l.EROFSSizeBytes != 4096 {
		t.Errorf("Layer(l1) = %+v, %v; want erofs size 4096", l, err)
	}
	if err := s.DeleteLayer(ctx, "sha256:l1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImageRef(ctx, "python:latest"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteImageRef(ctx, "python:latest"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteImageRef = %v; want ErrNotFound", err)
	}
	// Removing the sandbox releases the manifest.
	if err := s.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if users, err := s.ManifestUsers(ctx, "sha256:m2"); err != nil || len(users) != 0 {
		t.Errorf("ManifestUsers after rm = %v, %v; want none", users, err)
	}
	if err := s.DeleteManifest(ctx, "sha256:m2"); err != nil {
		t.Errorf("DeleteManifest(released) = %v", err)
	}
	if refs, err := s.ImageRefs(ctx); err != nil || len(refs) != 0 {
		t.Errorf("ImageRefs after deleting manifests = %v, %v; want none (cascade)", refs, err)
	}
}

func TestSandboxRootfs(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	sb := mustCreate(t, s, "r")
	if _, err := s.SandboxRootfs(ctx, sb.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("SandboxRootfs(none) = %v; want ErrNotFound", err)
	}
	if err := s.SetSandboxRootfs(ctx, Rootfs{SandboxID: sb.ID, ManifestDigest: "sha256:none", Mode: RootfsEROFS}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetSandboxRootfs(unknown manifest) = %v; want ErrNotFound", err)
	}
	if err := s.SetSandboxRootfs(ctx, Rootfs{SandboxID: 9999, Mode: RootfsBind}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetSandboxRootfs(unknown sandbox) = %v; want ErrNotFound", err)
	}
	if err := s.SetSandboxRootfs(ctx, Rootfs{SandboxID: sb.ID, Mode: "zfs"}); err == nil {
		t.Errorf("SetSandboxRootfs(mode zfs) = nil; want error")
	}
	if _, err := s.PutImage(ctx, "a", testImage("sha256:m", "sha256:l")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []Rootfs{
		{SandboxID: sb.ID, Mode: RootfsBind},
		{SandboxID: sb.ID, ManifestDigest: "sha256:m", Mode: RootfsEROFS, UpperFSType: "ext4"},
	} {
		if err := s.SetSandboxRootfs(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.SandboxRootfs(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Rootfs{}, "CreatedAt")); diff != "" {
			t.Errorf("SandboxRootfs mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestVolumes(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	q := int64(512)
	in := Volume{Name: "data", QuotaMiB: &q, Labels: map[string]string{"team": "a"}}
	v, err := s.CreateVolume(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVolume(ctx, Volume{Name: "data"}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateVolume(duplicate) = %v; want ErrExists", err)
	}
	if _, err := s.CreateVolume(ctx, Volume{Name: "cache"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Volume(ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v, got); diff != "" {
		t.Errorf("Volume mismatch (-create +get):\n%s", diff)
	}
	if err := s.SetVolumeSize(ctx, "data", 1234); err != nil {
		t.Fatal(err)
	}
	list, err := s.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "cache" || list[1].SizeBytes == nil || *list[1].SizeBytes != 1234 {
		t.Errorf("Volumes = %+v; want cache, data(size 1234)", list)
	}
	if list[0].QuotaMiB != nil || len(list[0].Labels) != 0 {
		t.Errorf("volume without quota = %+v; want nil quota, no labels", list[0])
	}
	if err := s.DeleteVolume(ctx, "data"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Volume(ctx, "data"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Volume(deleted) = %v; want ErrNotFound", err)
	}
	if err := s.DeleteVolume(ctx, "data"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteVolume(deleted) = %v; want ErrNotFound", err)
	}
	if err := s.SetVolumeSize(ctx, "data", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetVolumeSize(deleted) = %v; want ErrNotFound", err)
	}
}

func TestSnapshots(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	base := Snapshot{Digest: "sha256:a", Name: "base", ImageRef: "python:3", ImageManifestDigest: "sha256:m",
		ArtifactPath: "/h/snapshots/base", SizeBytes: 4096, SourceSandbox: "box"}
	a, err := s.InsertSnapshot(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if a.Format != "raw" || a.FSType != "ext4" || a.CreatedAt.IsZero() || a.IndexedAt.IsZero() {
		t.Errorf("InsertSnapshot defaults = %+v", a)
	}
	child := Snapshot{Digest: "sha256:b", ParentDigest: "sha256:a", ArtifactPath: "/h/snapshots/b", SizeBytes: 1}
	if _, err := s.InsertSnapshot(ctx, child); err != nil {
		t.Fatal(err)
	}
	for _, dup := range []Snapshot{
		{Digest: "sha256:a", ArtifactPath: "/x"},
		{Digest: "sha256:c", Name: "base", ArtifactPath: "/x"},
	} {
		if _, err := s.InsertSnapshot(ctx, dup); !errors.Is(err, ErrExists) {
			t.Errorf("InsertSnapshot(%+v) = %v; want ErrExists", dup, err)
		}
	}
	if _, err := s.InsertSnapshot(ctx, Snapshot{}); err == nil {
		t.Errorf("InsertSnapshot(no digest) = nil; want error")
	}
	for _, ref := range []string{"base", "sha256:a"} {
		got, err := s.Snapshot(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("Snapshot(%q) mismatch (-want +got):\n%s", ref, diff)
		}
	}
	if got, err := s.Snapshot(ctx, "sha256:b"); err != nil || got.Name != "" || got.ParentDigest != "sha256:a" {
		t.Errorf("Snapshot(unnamed) = %+v, %v", got, err)
	}
	list, err := s.Snapshots(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Snapshots = %v, %v; want 2", list, err)
	}
	if err := s.DeleteSnapshot(ctx, "sha256:a"); !errors.Is(err, ErrInUse) {
		t.Errorf("DeleteSnapshot(parent) = %v; want ErrInUse", err)
	}
	if err := s.DeleteSnapshot(ctx, "sha256:b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSnapshot(ctx, "sha256:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(ctx, "base"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Snapshot(deleted) = %v; want ErrNotFound", err)
	}
}
