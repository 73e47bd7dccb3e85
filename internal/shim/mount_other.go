//go:build !linux

package shim

// unmountFlags is zero where MNT_DETACH does not exist; the shim only runs
// containers on Linux, this keeps the package vettable elsewhere.
const unmountFlags = 0
