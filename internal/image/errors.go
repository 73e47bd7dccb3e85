package image

import "errors"

var (
	// ErrInvalidReference is returned for an image reference that is not
	// of the Docker form [registry/]repository[:tag][@digest].
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrNotFound is returned when an image is not in the local cache and
	// the operation may not (policy "never") or cannot fetch it.
	ErrNotFound = errors.New("image not found")
	// ErrDigestMismatch is returned when content does not hash to the digest
	// that names it. The bad copy has been deleted.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrInsecure is returned for a plain-HTTP request to a registry that is
	// neither on loopback nor listed in Options.Insecure.
	ErrInsecure = errors.New("plain HTTP refused for a registry not marked insecure")
	// ErrInUse is returned by Remove for an image a sandbox uses, unless
	// forced.
	ErrInUse = errors.New("image in use")
	// ErrUnauthorized is returned by Login when the registry rejects the
	// credentials.
	ErrUnauthorized = errors.New("registry rejected the credentials")
	// ErrUnsupported is returned for image content msb cannot run: no
	// manifest for the platform, an unknown layer compression, or an
	// unrecognised import format.
	ErrUnsupported = errors.New("unsupported image")
)
