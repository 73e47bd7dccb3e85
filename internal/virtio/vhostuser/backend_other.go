//go:build !linux

package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/msb-go/msb/internal/virtio"
)

// Serve is only implemented on Linux: vhost-user shares guest memory as
// file descriptors mapped with mmap and signals with eventfds. It closes
// conn and returns an error wrapping errors.ErrUnsupported.
func Serve(_ context.Context, conn *net.UnixConn, _ virtio.Device, _ *slog.Logger) error {
	conn.Close()
	return fmt.Errorf("vhost-user: %w", errors.ErrUnsupported)
}
