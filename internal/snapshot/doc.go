// Package snapshot implements disk snapshots of stopped sandboxes
// (reference §10.3): a copy of a sandbox's sparse ext4 upper layer plus a
// manifest.json naming the image it sits on, stored under
// MSB_HOME/snapshots/<name>/ and indexed in the state store.
//
// It defines three formats, each documented where it is implemented:
//
//   - the manifest and its canonical JSON form, whose SHA-256 is the
//     snapshot's id (manifest.go);
//   - the msb-sparse-sha256-v1 integrity digest of a sparse file, which
//     depends only on the file's bytes, never on which of its zero blocks
//     are stored as holes (digest.go);
//   - the export archive, a tar (zstd-compressed by default) that carries
//     only the non-zero blocks of the upper (archive.go).
//
// Archives and manifests read from outside are hostile input: every read is
// bounded, names are checked against a fixed list, and the upper's digest is
// checked against the manifest before anything is indexed.
//
// The package never boots or stops a sandbox; internal/sandbox decides
// whether a sandbox may be snapshotted and copies snapshots into new
// sandboxes.
package snapshot
