//go:build !linux

package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/virtio/virtiofs"
	"github.com/msb-go/msb/internal/virtio/virtionet"
)

// Machine is one microVM of the native VMM, which needs KVM: elsewhere
// NewFromSpec always fails and no Machine exists.
type Machine struct{}

// NewFromSpec closes spec.Agent and spec.Net.Conn, as the Linux version
// does when it fails, and reports that the native VMM needs Linux.
func NewFromSpec(spec *machine.Spec, log *slog.Logger) (*Machine, error) {
	spec.CloseStreams()
	return nil, fmt.Errorf("native vmm needs KVM on a Linux host: %w", errors.ErrUnsupported)
}

// Run fails: there is no Machine to run.
func (m *Machine) Run(ctx context.Context) error { return errors.ErrUnsupported }

// Stats returns zeros.
func (m *Machine) Stats() Stats { return Stats{} }

// Close does nothing.
func (m *Machine) Close() error { return nil }

// NewNet needs Linux (the stream is read through the poller).
func NewNet(machine.Net) (*virtionet.Device, io.Closer, error) {
	return nil, nil, fmt.Errorf("virtio-net devices need a Linux host: %w", errors.ErrUnsupported)
}

// NewShare needs Linux (openat2 and the passthrough file system).
func NewShare(machine.Share, *slog.Logger) (*virtiofs.Device, io.Closer, error) {
	return nil, nil, fmt.Errorf("virtio-fs shares need a Linux host: %w", errors.ErrUnsupported)
}
