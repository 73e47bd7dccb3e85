//go:build !linux

package vmm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/msb-go/msb/internal/machine"
)

// Backend is the native VMM, which needs KVM on a Linux host: elsewhere
// Start always fails.
type Backend struct {
	Log    *slog.Logger
	Harden func() error
}

var _ machine.Backend = (*Backend)(nil)

// Name returns machine.BackendKVM.
func (b *Backend) Name() string { return machine.BackendKVM }

// Start closes the files it owns and reports that the native VMM needs
// Linux.
func (b *Backend) Start(_ context.Context, spec *machine.Spec) (machine.Running, error) {
	spec.CloseStreams()
	return nil, fmt.Errorf("native vmm needs KVM on a Linux host: %w", errors.ErrUnsupported)
}
