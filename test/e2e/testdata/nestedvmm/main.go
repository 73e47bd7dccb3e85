// Command nestedvmm runs inside the nested harness's L1 guest (TestNestedKVM):
// it boots a guest kernel and initramfs on msb's native VMM (vmm.NewFromSpec
// and Machine.Run, the same path `--vmm kvm` takes) with the guest console on
// its stdout, then prints one summary line:
//
//	nestedvmm: run=ok new=… first_byte=… total=… exits=…
//
// and exits 0 when the guest stopped itself, 1 otherwise. Extra arguments
// are kernel parameters.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/msb-go/msb/internal/machine"
	"github.com/msb-go/msb/internal/vmm"
)

func main() {
	kernel := flag.String("kernel", "/guest/vmlinux", "guest kernel")
	initrd := flag.String("initrd", "/guest/initramfs.cpio", "guest initramfs")
	vcpus := flag.Int("vcpus", 1, "guest vCPUs")
	mem := flag.Int("mem", 256, "guest memory in MiB")
	timeout := flag.Duration("timeout", 60*time.Second, "bound on the guest's run")
	flag.Parse()
	start := time.Now()
	ok, err := run(start, *kernel, *initrd, *vcpus, *mem, *timeout, flag.Args())
	if err != nil {
		fmt.Printf("\nnestedvmm: run=%q total=%v\n", err.Error(), time.Since(start))
		os.Exit(1)
	}
	fmt.Printf("\nnestedvmm: run=ok %s\n", ok)
}

// firstByte copies the guest console to stdout and notes when its first
// byte arrived.
type firstByte struct {
	start time.Time
	mu    sync.Mutex
	at    time.Duration
}

func (f *firstByte) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.at == 0 && len(p) > 0 {
		f.at = time.Since(f.start)
	}
	f.mu.Unlock()
	return os.Stdout.Write(p)
}

func (f *firstByte) get() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}

func run(start time.Time, kernel, initrd string, vcpus, mem int, timeout time.Duration, cmdline []string) (string, error) {
	// spec.Console is a file; a pipe lets us time the first byte.
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	cons := &firstByte{start: start}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(cons, r)
	}()
	defer func() {
		w.Close()
		<-copied
		r.Close()
	}()
	spec := &machine.Spec{Kernel: kernel, Initrd: initrd, Cmdline: cmdline, VCPUs: vcpus, MemoryMiB: mem, Console: w}
	m, err := vmm.NewFromSpec(spec, nil)
	if err != nil {
		return "", fmt.Errorf("new machine: %w", err)
	}
	defer m.Close()
	created := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		return "", fmt.Errorf("run after %v (new %v, first console byte %v, exits %+v): %w",
			time.Since(start), created, cons.get(), m.Stats(), err)
	}
	return fmt.Sprintf("new=%v first_byte=%v total=%v exits=%+v", created, cons.get(), time.Since(start), m.Stats()), nil
}
