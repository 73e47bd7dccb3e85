package shim

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/containerd/fifo"
)

// stdio is the container's end of containerd's fifos.
type stdio struct {
	in, out, err io.ReadWriteCloser // nil when containerd gave no path
	// inHold is a write end of the stdin fifo the shim holds, as runc's
	// shim does: the copy into the process sees EOF only once it is
	// closed — by CloseIO, after the client's last write — not whenever
	// no client happens to have the fifo open (before ctr opened it, or
	// between two attaches).
	inHold io.Closer
}

func (st *stdio) Close() {
	for _, f := range []io.Closer{st.in, st.inHold, st.out, st.err} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// openStdio opens the fifos containerd created; containerd's side already
// has them open, so the opens do not wait long.
func openStdio(ctx context.Context, in, out, errPath string, terminal bool) (*stdio, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := &stdio{}
	var err error
	if in != "" {
		// O_NONBLOCK: OpenFifo returns at once and completes the open in
		// the background; a ctx cancelled before then closes the fifo. So
		// not this call's ctx (cancelled on return, often before ctr's
		// side is open): stdin was then closed at once and the command
		// read EOF instead of what ctr sent (TestShimContainerd's
		// execStdin, about one run in two).
		bg := context.WithoutCancel(ctx)
		if st.in, err = fifo.OpenFifo(bg, in, syscall.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stdin: %w", err)
		}
		if st.inHold, err = fifo.OpenFifo(bg, in, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stdin: %w", err)
		}
	}
	if out != "" {
		if st.out, err = fifo.OpenFifo(ctx, out, syscall.O_WRONLY, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stdout: %w", err)
		}
	}
	// With a terminal, stdout carries both streams, as with runc.
	if errPath != "" && !terminal {
		if st.err, err = fifo.OpenFifo(ctx, errPath, syscall.O_WRONLY, 0); err != nil {
			st.Close()
			return nil, fmt.Errorf("open stderr: %w", err)
		}
	}
	return st, nil
}
