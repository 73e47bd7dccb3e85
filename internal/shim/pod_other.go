//go:build !linux

package shim

import "errors"

var errNoBind = errors.New("bind mounts need Linux")

func bindMount(src, dst string) error { return errNoBind }

func unmountBind(dir string) error { return nil }
