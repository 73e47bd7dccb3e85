package store

import (
	"errors"
	"testing"
)

// TestSnapshotKeepsImage: a snapshot's image manifest is a user (image rm
// refuses it) and is not garbage.
func TestSnapshotKeepsImage(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	if _, err := s.PutImage(ctx, "", testImage("sha256:m1", "sha256:l1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutImage(ctx, "", testImage("sha256:m2", "sha256:l2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertSnapshot(ctx, Snapshot{Digest: "sha256:s1", Name: "base", ImageRef: "busybox",
		ImageManifestDigest: "sha256:m1", ArtifactPath: "/x", SizeBytes: 1}); err != nil {
		t.Fatal(err)
	}
	users, err := s.ManifestUsers(ctx, "sha256:m1")
	if err != nil || len(users) != 1 || users[0] != "snapshot:base" {
		t.Errorf("ManifestUsers(m1) = %q, %v; want [snapshot:base]", users, err)
	}
	unref, err := s.UnreferencedManifests(ctx)
	if err != nil || len(unref) != 1 || unref[0].Digest != "sha256:m2" {
		t.Errorf("UnreferencedManifests = %+v, %v; want only sha256:m2", unref, err)
	}
	if _, err := s.InsertSnapshot(ctx, Snapshot{Digest: "sha256:s2", Name: "base", ArtifactPath: "/y", SizeBytes: 1}); !errors.Is(err, ErrExists) {
		t.Errorf("InsertSnapshot(same name) = %v; want ErrExists", err)
	}
	if err := s.DeleteSnapshot(ctx, "sha256:s1"); err != nil {
		t.Fatal(err)
	}
	if unref, err := s.UnreferencedManifests(ctx); err != nil || len(unref) != 2 {
		t.Errorf("UnreferencedManifests after the snapshot's removal = %+v, %v; want both", unref, err)
	}
}
