// Package image pulls, imports and caches OCI images and turns them into the
// read-only EROFS root file systems that sandboxes boot from.
//
// Layout under the msb home (see internal/home):
//
//	cache/blobs/sha256/<hex>      content-addressed blobs (configs, layers), verified before rename
//	cache/tmp/sha256-<hex>.part   a blob being downloaded; kept across failures and resumed with Range
//	cache/tmp/sha256-<hex>.lock   per-blob flock: concurrent pulls of one blob share one download
//	cache/images/<hex>.erofs      the flattened image of manifest sha256:<hex>, built once (lock beside it)
//	secrets/registries/<host>.json  credentials saved by `msb registry login` (0600)
//
// The database (internal/store) records which references point at which
// manifests and which layers a manifest has; blobs are the only copy of layer
// data. Registry I/O uses go-containerregistry: remote.Get resolves tags and
// indexes (platform linux/amd64, or Options.Platform), authentication goes
// through msb's own credential store and then authn.DefaultKeychain (Docker
// config and credential helpers). Blobs are fetched with the same
// authenticated transport but our own GET, because ggcr's layer reader cannot
// resume: a .part file is continued with "Range: bytes=N-" (a 206 answer is
// appended, a 200 restarts) and the whole blob is verified against its digest
// before it is renamed into the store; a mismatch deletes it and downloads it
// again, so a corrupt blob is never used.
//
// Plain HTTP is used only for loopback registries (localhost, 127.0.0.0/8,
// [::1]) and registries named in Options.Insecure; ggcr would also fall back
// to HTTP for RFC 1918 addresses, which a guarding RoundTripper refuses.
//
// A Store is safe for concurrent use by many goroutines and processes.
package image
