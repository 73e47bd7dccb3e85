package image

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Push uploads img to ref with the Store's credentials, CA files and
// plain-HTTP policy (mirrors do not apply). The tests use it to publish
// locally built images to a local registry.
func (s *Store) Push(ctx context.Context, ref string, img v1.Image) error {
	r, err := ParseReference(ref)
	if err != nil {
		return err
	}
	repo, err := s.connect(ctx, r, transport.PushScope)
	if err != nil {
		return fmt.Errorf("push %s: %w", r, err)
	}
	if err := remote.Write(repo.ref, img, remote.WithTransport(repo.rt), remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", r, err)
	}
	return nil
}
